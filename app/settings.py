"""Service settings, read from the environment (prefix ``REGISTRY_``), a ``.env`` file, or
files in :data:`SECRETS_DIR` named like the variables (docker compose's secrets)."""

from __future__ import annotations

from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

# Where docker compose (and Swarm) mount secrets: a file there named like a setting's variable,
# lower case (``/run/secrets/registry_database_password``), holds that setting; the environment
# and ``.env`` win over it. Read only when the directory exists.
SECRETS_DIR = Path("/run/secrets")

_LOOPBACK: list[IPv4Network | IPv6Network] = [IPv4Network("127.0.0.0/8"), IPv6Network("::1/128")]


class Settings(BaseSettings):
    """Every knob of the service. Read only through :func:`get_settings`."""

    model_config = SettingsConfigDict(env_prefix="REGISTRY_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///var/registry.db"
    # The login that runs migrations and owns the schema (PostgreSQL: the owner role; the
    # service runs as ``database_url``'s runtime role, which may not alter tables, disable
    # triggers, DELETE or TRUNCATE). None: ``database_url`` (SQLite, embedded).
    migration_database_url: str | None = None
    # The passwords of those two logins, for URLs that carry none: kept out of the URLs and
    # the environment, as secret files (SECRETS_DIR/registry_database_password and
    # registry_migration_database_password). A URL with a password of its own and one of
    # these is refused: the password is given in one place.
    database_password: SecretStr | None = None
    migration_database_password: SecretStr | None = None
    # The runtime role ``ssreg migrate`` grants SELECT/INSERT and the audited UPDATEs to
    # after upgrading (``ssreg db grant``); None: no grants (SQLite, or granted by hand).
    runtime_db_role: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    # FULL: every commit is fsynced (durable records). NORMAL trades the last commits on a
    # power cut for speed; never for GxP use.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    store_root: Path = Path("models_store")
    # Where clients reach the service (scheme, host, port, and any path prefix a proxy puts in
    # front): absolute URLs the service sends (the Link headers of paged lists) start with it,
    # never with the Host header a request brought.
    public_base_url: str = Field(
        default="http://127.0.0.1:8000", pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$"
    )
    # `ssreg store fsck --collect` removes temporary files and unreferenced artifacts only when
    # they are older than this: anything younger may belong to a request still in flight.
    store_collect_grace_seconds: float = Field(default=3600, ge=0)

    # Signed checkpoints of the audit chain: the operator's Ed25519 private key (PEM, written
    # by ``ssreg audit keygen PATH``), kept outside the database. The service signs the chain
    # head with it and appends each checkpoint to ``audit_checkpoint_log`` (default: next to
    # the key, ``<key file>.checkpoints.jsonl``), a file the database cannot rewind. None: no
    # checkpoints; the chain is then verified whole and is not anchored.
    audit_signing_key: Path | None = None
    audit_checkpoint_log: Path | None = None
    # A transaction whose audit events reach a multiple of this sequence number signs the head
    # when it commits (1: every transaction that appends an event).
    audit_checkpoint_every: int = Field(default=1, ge=1)

    token_ttl_minutes: int = 480
    # A browser session ends this long after login (the pages' cookie holds its token).
    web_session_minutes: int = Field(default=30, ge=1, le=24 * 60)
    # Mark the session cookie Secure even when the request did not arrive over TLS (behind a
    # TLS-terminating proxy that does not send X-Forwarded-Proto).
    cookie_secure: bool = False
    # Failed password checks count over a sliding window of login_window_minutes. From one
    # client address at most login_address_limit failed logins per window (then 429 until the
    # oldest leaves it); an account locks for lockout_minutes once lockout_threshold failures
    # against it fall in the window, from any addresses. The limit is below the threshold, so
    # no single address can lock an account (app.services.auth).
    login_window_minutes: int = Field(default=15, ge=1, le=24 * 60)
    login_address_limit: int = Field(default=5, ge=1)
    lockout_threshold: int = Field(default=10, ge=2)
    lockout_minutes: int = Field(default=15, ge=1)

    # Periodic review (ICH Q14): an approved or requalified version is due this many days
    # after its approval unless the approval sets another date.
    review_interval_days: int = Field(default=365, ge=1, le=3650)

    max_upload_bytes: int = 64 * 1024 * 1024
    max_dataset_rows: int = 100_000
    max_dataset_channels: int = 20_000
    max_predict_spectra: int = 100_000
    # A dataset file is refused before it is decoded when its own metadata (a Parquet footer;
    # for CSV, the rows and columns read) say it would take more than this many bytes in
    # memory: a few MiB of compressed constants can otherwise decode to gigabytes.
    max_decoded_bytes: int = Field(default=256 * 2**20, ge=2**20)

    # Request bodies (app/api/limits.py). Bodies of routes that take no file are capped at
    # max_request_body_bytes; the bytes of all bodies being received at once, in one worker
    # process, at max_inflight_body_bytes (beyond it: 503 with Retry-After).
    max_request_body_bytes: int = Field(default=2**20, ge=64 * 1024)
    max_inflight_body_bytes: int = Field(default=256 * 2**20, ge=2**20)
    # A body whose next bytes take longer than body_read_timeout_seconds to arrive, or that
    # is not complete after body_total_timeout_seconds, is answered 408 and its connection
    # closed.
    body_read_timeout_seconds: float = Field(default=30.0, gt=0)
    body_total_timeout_seconds: float = Field(default=300.0, gt=0)
    # Connections (app/server.py): a request line and headers not complete this long after
    # the connection opened, or after their first byte on a kept-alive connection, are cut
    # off; so are heads larger than max_header_bytes.
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    max_header_bytes: int = Field(default=64 * 1024, ge=8 * 1024)

    # Threads of the numeric libraries (BLAS, OpenMP) per worker process (0: the libraries'
    # defaults, one per core). The service scales by worker processes, one per core; threads of
    # their own only contend with the others and with the event loop (bench/predict.py
    # --compute-threads compares; figures in the README).
    compute_threads: int = Field(default=1, ge=0)

    @model_validator(mode="after")
    def _one_address_cannot_lock_an_account(self) -> Settings:
        if self.login_address_limit >= self.lockout_threshold:
            raise ValueError(
                f"login_address_limit ({self.login_address_limit}) must be below "
                f"lockout_threshold ({self.lockout_threshold}): otherwise failed logins from "
                "one address could lock anybody out"
            )
        return self

    @model_validator(mode="after")
    def _passwords_into_urls(self) -> Settings:
        self.database_url = _with_password(
            self.database_url, self.database_password, "REGISTRY_DATABASE"
        )
        if self.migration_database_url is not None:
            self.migration_database_url = _with_password(
                self.migration_database_url,
                self.migration_database_password,
                "REGISTRY_MIGRATION_DATABASE",
            )
        elif self.migration_database_password is not None:
            raise ValueError(
                "REGISTRY_MIGRATION_DATABASE_PASSWORD is set but REGISTRY_MIGRATION_DATABASE_URL "
                "is not: give the migration login's URL"
            )
        return self

    @field_validator("public_base_url")
    @classmethod
    def _without_trailing_slash(cls, url: str) -> str:
        return url.rstrip("/")

    # Operations. Log lines (JSON, one per request and per event) at this level and above
    # (WARNING: no request lines).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # GET /metrics answers without a token to clients in these networks (a Prometheus or agent
    # on the same host by default); anyone else needs an admin's or auditor's bearer token.
    # A JSON list, e.g. '["127.0.0.0/8", "10.20.0.0/16"]'; '[]' requires a token always.
    metrics_scrape_networks: list[IPv4Network | IPv6Network] = Field(
        default_factory=lambda: _LOOPBACK.copy()
    )
    # prometheus-client's multiprocess directory (several workers): the environment variable
    # PROMETHEUS_MULTIPROC_DIR, read here by that name (ssreg serve empties and exports it).
    prometheus_multiproc_dir: Path | None = Field(
        default=None, validation_alias="PROMETHEUS_MULTIPROC_DIR"
    )

    @property
    def migration_url(self) -> str:
        return self.migration_database_url or self.database_url

    @property
    def checkpoint_log(self) -> Path | None:
        if self.audit_checkpoint_log is not None:
            return self.audit_checkpoint_log
        if self.audit_signing_key is None:
            return None
        return self.audit_signing_key.with_name(self.audit_signing_key.name + ".checkpoints.jsonl")


def _with_password(url: str, password: SecretStr | None, name: str) -> str:
    """``url`` with ``password`` as its login's password (``url`` itself when None)."""
    if password is None:
        return url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        raise ValueError(f"{name}_PASSWORD is set but {name}_URL is SQLite, which has no logins")
    if parsed.password is not None:
        raise ValueError(
            f"{name}_URL carries a password and {name}_PASSWORD is set too: give it in one place"
        )
    return parsed.set(password=password.get_secret_value()).render_as_string(hide_password=False)


@lru_cache
def get_settings() -> Settings:
    return Settings(_secrets_dir=SECRETS_DIR if SECRETS_DIR.is_dir() else None)
