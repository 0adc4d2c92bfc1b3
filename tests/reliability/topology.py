"""The settings each process of a deployment gets: the reliability tests start docker-compose.yml's
topology as processes with them, and tests/test_compose.py checks that the compose file gives
its services the same ones (by name; the values differ: paths, hosts)."""

# Every server and one-shot command of a deployment: its database login (PostgreSQL: the
# runtime role), the artifact store and the audit chain's signing key.
SERVER_SETTINGS = ("REGISTRY_DATABASE_URL", "REGISTRY_STORE_ROOT", "REGISTRY_AUDIT_SIGNING_KEY")
# What `ssreg migrate` adds on PostgreSQL: the schema owner's login and the role it grants.
MIGRATE_SETTINGS = ("REGISTRY_MIGRATION_DATABASE_URL", "REGISTRY_RUNTIME_DB_ROLE")
# What a server of several workers adds: prometheus-client's multiprocess directory.
WORKERS_SETTINGS = ("PROMETHEUS_MULTIPROC_DIR",)
