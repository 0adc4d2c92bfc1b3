"""docker-compose.yml and the Dockerfile, checked for their structure (no Docker engine runs
here; tests/reliability runs the same topology as processes, with the same settings by name:
tests/reliability/topology.py)."""

from __future__ import annotations

import http.server
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

import click
import pytest
import typer.main
import yaml
from sqlalchemy.engine import make_url

from app.cli import app as ssreg_app
from app.settings import Settings
from tests.conftest import ROOT
from tests.reliability.topology import MIGRATE_SETTINGS, SERVER_SETTINGS, WORKERS_SETTINGS

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
REGISTRY = ("roles", "migrate", "api", "reconcile")  # the services that run the registry's image
SECRETS_DIR = PurePosixPath("/run/secrets")
# The secret files the service reads as settings (app/settings.py, SECRETS_DIR).
PASSWORD_SETTINGS = {
    "REGISTRY_DATABASE_URL": "REGISTRY_DATABASE_PASSWORD",
    "REGISTRY_MIGRATION_DATABASE_URL": "REGISTRY_MIGRATION_DATABASE_PASSWORD",
}
_DEFAULTED = re.compile(r"\$\{([A-Z_][A-Z0-9_]*):-([^}]*)\}")


def interpolated(value: str) -> str:
    """``value`` as compose interpolates it with no variable set: ``${NAME:-default}`` is the
    default; any other ``$`` form would depend on the operator's shell, which this file
    must not."""
    out = _DEFAULTED.sub(lambda m: m.group(2), value)
    assert "$" not in out, f"{value!r}: only ${{NAME:-default}} is used in docker-compose.yml"
    return out


def command(service: str) -> list[str]:
    raw = SERVICES[service]["command"]
    words = shlex.split(raw) if isinstance(raw, str) else [str(w) for w in raw]
    return [interpolated(w) for w in words]


def option(service: str, name: str) -> str:
    words = command(service)
    assert words.count(name) == 1, f"{service}: {name} given {words.count(name)} times"
    return words[words.index(name) + 1]


def environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    assert isinstance(env, dict), f"{service}: environment as a mapping"
    return {k: interpolated(str(v)) for k, v in env.items()}


def secret_targets(service: str) -> dict[str, str]:
    """Path inside the container → the top-level secret mounted there."""
    out: dict[str, str] = {}
    for entry in SERVICES[service].get("secrets", []):
        source, target = (entry, entry) if isinstance(entry, str) else (entry["source"], None)
        if target is None:
            target = entry.get("target", source)
        out[str(SECRETS_DIR / target)] = source
    return out


def configuration(service: str) -> set[str]:
    """The settings a registry container gets by name: its environment and the secret files
    app/settings.py reads from /run/secrets (named like the variables, lower case)."""
    from_files = {
        PurePosixPath(path).name.upper()
        for path in secret_targets(service)
        if PurePosixPath(path).name.upper() in settings_variables()
    }
    return set(environment(service)) | from_files


def settings_variables() -> set[str]:
    """Every variable app/settings.py reads: REGISTRY_<field> or a field's own alias."""
    prefix = Settings.model_config.get("env_prefix", "")
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names.add(alias.upper() if isinstance(alias, str) else f"{prefix}{name}".upper())
    return names


def cli_variables() -> set[str]:
    """Every variable an ``ssreg`` option reads (e.g. REGISTRY_OWNER_PASSWORD)."""
    found: set[str] = set()

    def walk(cmd: click.Command) -> None:
        for param in cmd.params:
            envvar = getattr(param, "envvar", None)
            found.update([envvar] if isinstance(envvar, str) else envvar or [])
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(ssreg_app))
    return found


def unknown_variables(names: set[str]) -> set[str]:
    """The REGISTRY_* (and PROMETHEUS_*) names that nothing of the registry reads."""
    known = settings_variables() | cli_variables()
    ours = {n for n in names if n.startswith(("REGISTRY_", "PROMETHEUS_"))}
    return ours - known


def volume_mounts(service: str) -> dict[str, str]:
    """Container path → named volume."""
    out: dict[str, str] = {}
    for entry in SERVICES[service].get("volumes", []):
        source, target = entry.split(":")[:2]
        assert source in COMPOSE["volumes"], f"{service}: {source} is not a named volume"
        out[target] = source
    return out


def mount_of(service: str, path: str) -> str | None:
    """The named volume ``path`` lies on in ``service``, if any."""
    p = PurePosixPath(path)
    for target, volume in volume_mounts(service).items():
        if p == PurePosixPath(target) or PurePosixPath(target) in p.parents:
            return volume
    return None


def on_tmpfs(service: str, path: str) -> bool:
    p = PurePosixPath(path)
    return any(p == PurePosixPath(t) or PurePosixPath(t) in p.parents for t in tmpfs(service))


def tmpfs(service: str) -> list[str]:
    raw = SERVICES[service].get("tmpfs", [])
    return [raw] if isinstance(raw, str) else list(raw)


# ------------------------------------------------------------------------------- topology


def test_services_start_in_order_db_roles_migrate_api() -> None:
    assert set(SERVICES) == {"db", "roles", "migrate", "api", "reconcile"}
    conditions = {
        name: {dep: spec["condition"] for dep, spec in service.get("depends_on", {}).items()}
        for name, service in SERVICES.items()
    }
    assert conditions == {
        "db": {},
        "roles": {"db": "service_healthy"},
        "migrate": {"roles": "service_completed_successfully"},
        "api": {"db": "service_healthy", "migrate": "service_completed_successfully"},
        "reconcile": {"migrate": "service_completed_successfully"},
    }


def test_only_the_nightly_reconciliation_waits_for_its_profile() -> None:
    """`docker compose up` starts everything but it; a scheduler runs it with `run --rm`."""
    profiles = {name: service.get("profiles") for name, service in SERVICES.items()}
    assert profiles == dict.fromkeys(SERVICES) | {"reconcile": ["nightly"]}
    assert command("reconcile") == ["ssreg", "audit", "verify", "--full", "--record"]


def test_the_one_shots_run_once_and_the_services_restart() -> None:
    restart = {name: str(service.get("restart")) for name, service in SERVICES.items()}
    assert restart == {
        "db": "unless-stopped",
        "roles": "no",
        "migrate": "no",
        "api": "unless-stopped",
        "reconcile": "no",
    }


def test_roles_migrate_and_api_run_one_image_read_only_as_the_commands_they_are() -> None:
    images = {(str(SERVICES[s].get("build")), SERVICES[s].get("image")) for s in REGISTRY}
    assert images == {(".", "softsensor-registry:local")}
    for name in REGISTRY:
        assert SERVICES[name]["read_only"] is True, name
        assert on_tmpfs(name, "/tmp/matplotlib"), name  # MPLCONFIGDIR, uploads spooled to /tmp
    assert command("roles")[:3] == ["ssreg", "db", "roles"]
    assert command("migrate") == ["ssreg", "migrate"]
    assert command("api")[:2] == ["ssreg", "serve"]
    assert option("api", "--host") == "0.0.0.0"


def test_the_api_serves_several_workers_with_their_metrics_on_a_tmpfs() -> None:
    assert int(option("api", "--workers")) >= 2
    (metrics_dir,) = WORKERS_SETTINGS
    path = environment("api")[metrics_dir]
    assert on_tmpfs("api", path)
    assert mount_of("api", path) is None


def test_the_database_and_the_api_have_health_checks() -> None:
    assert "pg_isready" in " ".join(SERVICES["db"]["healthcheck"]["test"])
    check = SERVICES["api"]["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"], "the image has python, not curl"
    assert "/readyz" in check[3]
    assert f":{option('api', '--port')}/" in check[3]


@pytest.fixture
def readyz_answering() -> Iterator[tuple[int, list[int]]]:
    """A local HTTP server answering GET /readyz with the status codes of the list in turn."""
    statuses: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(statuses.pop(0) if self.path == "/readyz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], statuses
    finally:
        server.shutdown()
        server.server_close()


def test_the_api_health_check_passes_on_200_and_fails_on_503(
    readyz_answering: tuple[int, list[int]],
) -> None:
    port, statuses = readyz_answering
    code = SERVICES["api"]["healthcheck"]["test"][3]
    code = code.replace(f":{option('api', '--port')}/", f":{port}/")
    statuses.extend([200, 503])
    ok = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    not_ready = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert (ok.returncode, not_ready.returncode) == (0, 1), not_ready.stderr


# ------------------------------------------------------------------------ logins and roles


def test_migrate_logs_in_as_the_owner_and_the_api_as_the_runtime_role() -> None:
    owner, runtime = option("roles", "--owner"), option("roles", "--runtime")
    database = option("roles", "--database")
    assert owner != runtime
    migration = make_url(environment("migrate")["REGISTRY_MIGRATION_DATABASE_URL"])
    service = make_url(environment("api")["REGISTRY_DATABASE_URL"])
    assert (migration.username, migration.database, migration.host) == (owner, database, "db")
    assert (service.username, service.database, service.host) == (runtime, database, "db")
    assert environment("migrate")["REGISTRY_RUNTIME_DB_ROLE"] == runtime
    admin = make_url(option("roles", "--admin-url"))
    assert (admin.host, admin.database) == ("db", SERVICES["db"]["environment"]["POSTGRES_DB"])
    assert admin.username == SERVICES["db"]["environment"]["POSTGRES_USER"]


def test_no_password_is_written_in_the_file() -> None:
    for name, service in SERVICES.items():
        env = {k: str(v) for k, v in service.get("environment", {}).items()}
        words = command(name) if "command" in service else []
        for value in [*env.values(), *words]:
            if "://" in value:
                assert make_url(value).password is None, f"{name}: a password in {value}"
        for key in env:
            if re.search(r"PASSWORD|SECRET", key):
                assert key.endswith("_FILE"), f"{name}: {key} inline"
    # PostgreSQL's own: the image reads it from the secret (and never needs it again).
    db_env = SERVICES["db"]["environment"]
    assert "POSTGRES_PASSWORD" not in db_env
    assert db_env["POSTGRES_PASSWORD_FILE"] in secret_targets("db")


def test_each_password_is_one_secret_that_roles_sets_and_its_login_uses() -> None:
    """roles creates the owner and the runtime role with the passwords of the same secrets
    migrate and the api log in with (as /run/secrets/registry_*_password settings)."""
    roles = secret_targets("roles")
    owner_secret = roles[option("roles", "--owner-password-file")]
    runtime_secret = roles[option("roles", "--runtime-password-file")]
    assert owner_secret != runtime_secret
    migrate, api = secret_targets("migrate"), secret_targets("api")
    assert migrate["/run/secrets/registry_migration_database_password"] == owner_secret
    assert api["/run/secrets/registry_database_password"] == runtime_secret
    assert runtime_secret not in migrate.values()
    assert owner_secret not in api.values()
    admin_secret = roles[option("roles", "--admin-password-file")]
    assert secret_targets("db")[SERVICES["db"]["environment"]["POSTGRES_PASSWORD_FILE"]] == (
        admin_secret
    )


def test_every_postgresql_login_of_a_registry_container_gets_its_password() -> None:
    for name in ("migrate", "api", "reconcile"):
        env, config = environment(name), configuration(name)
        needed = {
            "api": "REGISTRY_DATABASE_URL",
            "reconcile": "REGISTRY_DATABASE_URL",
            "migrate": "REGISTRY_MIGRATION_DATABASE_URL",
        }
        assert PASSWORD_SETTINGS[needed[name]] in config, name
        for url, password in PASSWORD_SETTINGS.items():
            if password in config:
                assert make_url(env[url]).get_backend_name() == "postgresql", (name, url)


# -------------------------------------------------------------------------------- secrets


def test_secrets_are_files_kept_out_of_git() -> None:
    declared = COMPOSE["secrets"]
    for name, spec in declared.items():
        path = PurePosixPath(spec["file"])
        assert path.parent == PurePosixPath("secrets"), (name, path)
    assert "secrets/" in (ROOT / ".gitignore").read_text().splitlines()
    used = {src for name in SERVICES for src in secret_targets(name).values()}
    assert used == set(declared), "every secret declared is used, every one used is declared"


def test_every_secret_a_registry_container_gets_is_read_as_a_setting_or_named() -> None:
    """A secret is used only when something opens its path: a setting's own file (its
    variable's name, lower case) or a path the command or environment names. A misspelt
    target is neither, and would leave the service without its password."""
    for name in REGISTRY:
        named = set(command(name)) | set(environment(name).values())
        for path in secret_targets(name):
            as_setting = PurePosixPath(path).name.upper() in settings_variables()
            assert as_setting or path in named, f"{name}: nothing reads {path}"
            assert not (as_setting and path in named), f"{name}: {path} read twice"


def test_secret_files_read_as_settings_are_only_the_passwords() -> None:
    """Any file in /run/secrets named like a setting becomes its value: the signing key must
    not be mounted as registry_audit_signing_key (the PEM text would be read as its path)."""
    for name in REGISTRY:
        for path in secret_targets(name):
            setting = PurePosixPath(path).name.upper()
            if setting in settings_variables():
                assert setting in PASSWORD_SETTINGS.values(), f"{name}: {path}"


def test_the_signing_key_is_a_secret_where_the_setting_points_and_its_log_on_a_volume() -> None:
    keyed = [n for n in SERVICES if "REGISTRY_AUDIT_SIGNING_KEY" in environment(n)]
    # migrate seals the chain, the api signs checkpoints, reconcile seals its recorded result
    assert set(keyed) >= {"migrate", "api", "reconcile"}
    sources = set()
    for name in keyed:
        env = environment(name)
        key = env["REGISTRY_AUDIT_SIGNING_KEY"]
        sources.add(secret_targets(name).get(key))
        log = env["REGISTRY_AUDIT_CHECKPOINT_LOG"]
        volume = mount_of(name, log)
        assert volume is not None, f"{name}: the checkpoint log {log} is on no volume"
        assert volume not in (mount_of(name, env["REGISTRY_STORE_ROOT"]), "pgdata")
        assert SECRETS_DIR not in PurePosixPath(log).parents
    (source,) = sources  # one key, wherever it signs
    assert source is not None, "REGISTRY_AUDIT_SIGNING_KEY names no mounted secret"
    assert COMPOSE["secrets"][source]["file"].endswith(".key")


# ------------------------------------------------------------------------------- settings


def test_every_registry_variable_in_the_file_is_one_the_registry_reads() -> None:
    for name in REGISTRY:
        assert unknown_variables(set(environment(name))) == set(), name
        assert unknown_variables(configuration(name)) == set(), name


def test_a_misspelt_variable_is_unknown() -> None:
    assert unknown_variables({"REGISTRY_DATABSE_URL", "REGISTRY_STORE_ROOT", "PATH"}) == {
        "REGISTRY_DATABSE_URL"
    }
    assert unknown_variables({"PROMETHEUS_MULTIPROC_DIR", "REGISTRY_OWNER_PASSWORD"}) == set()


def test_the_containers_get_the_settings_the_reliability_processes_get() -> None:
    assert configuration("api") >= {*SERVER_SETTINGS, *WORKERS_SETTINGS}
    assert configuration("migrate") >= {*SERVER_SETTINGS, *MIGRATE_SETTINGS}
    assert not configuration("api") & set(MIGRATE_SETTINGS), "the api never logs in as owner"


# -------------------------------------------------------------------------------- volumes


def test_data_lives_on_named_volumes() -> None:
    assert set(COMPOSE["volumes"]) == {"pgdata", "artifacts", "audit-checkpoints"}
    assert volume_mounts("db") == {"/var/lib/postgresql/data": "pgdata"}
    store = environment("api")["REGISTRY_STORE_ROOT"]
    assert mount_of("api", store) == "artifacts"
    # Only the api writes artifacts (migrations write none); nobody else mounts them.
    assert [n for n in SERVICES if "artifacts" in volume_mounts(n).values()] == ["api"]
    assert f"REGISTRY_STORE_ROOT={store}" in DOCKERFILE
    assert volume_mounts("roles") == {}


# ----------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_image_runs_ssreg_serve_as_a_user_that_is_not_root() -> None:
    instructions = dockerfile_instructions()
    (user,) = [rest for word, rest in instructions if word == "USER"]
    assert user.split(":")[0] not in ("root", "0")
    assert instructions[-1][0] == "CMD"
    cmd = yaml.safe_load(instructions[-1][1])  # the JSON (exec) form
    assert cmd[:2] == ["ssreg", "serve"]
    assert "--workers" in cmd
    (run_as,) = [rest for word, rest in instructions if word == "RUN" and "useradd" in rest]
    assert f"--uid {user.split(':')[0]}" in run_as


def test_the_image_installs_the_pinned_versions_where_the_migrations_are() -> None:
    instructions = dockerfile_instructions()
    (install,) = [rest for word, rest in instructions if word == "RUN" and "pip install" in rest]
    assert "-c constraints.txt" in install
    # A wheel holds app/ only: `ssreg migrate` finds migrations/ next to the code it runs.
    assert install.endswith("-e .")
    (workdir,) = [rest for word, rest in instructions if word == "WORKDIR"]
    assert ("COPY", "migrations ./migrations") in instructions
    assert workdir == "/srv"


def test_the_image_has_the_pg_dump_of_the_database_server() -> None:
    major = SERVICES["db"]["image"].split(":")[1].split(".")[0]
    (base,) = instructions_of("FROM")
    assert base.endswith("-bookworm")  # Debian 12 ships PostgreSQL 15's client
    assert any(f"postgresql-client-{major}" in rest for rest in instructions_of("RUN"))


def instructions_of(word: str) -> list[str]:
    return [rest for w, rest in dockerfile_instructions() if w == word]
