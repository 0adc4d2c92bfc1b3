"""Service settings, read from the environment (prefix ``REGISTRY_``) or a ``.env`` file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service. Read only through :func:`get_settings`."""

    model_config = SettingsConfigDict(env_prefix="REGISTRY_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///var/registry.db"
    # The login that runs migrations and owns the schema (PostgreSQL: the owner role; the
    # service runs as ``database_url``'s runtime role, which may not alter tables, disable
    # triggers, DELETE or TRUNCATE). None: ``database_url`` (SQLite, embedded).
    migration_database_url: str | None = None
    # The runtime role ``ssreg migrate`` grants SELECT/INSERT and the audited UPDATEs to
    # after upgrading (``ssreg db grant``); None: no grants (SQLite, or granted by hand).
    runtime_db_role: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    # FULL: every commit is fsynced (durable records). NORMAL trades the last commits on a
    # power cut for speed; never for GxP use.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    store_root: Path = Path("models_store")

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
    lockout_threshold: int = 5
    lockout_minutes: int = 15

    # Periodic review (ICH Q14): an approved or requalified version is due this many days
    # after its approval unless the approval sets another date.
    review_interval_days: int = Field(default=365, ge=1, le=3650)

    max_upload_bytes: int = 64 * 1024 * 1024
    max_dataset_rows: int = 100_000
    max_dataset_channels: int = 20_000
    max_predict_spectra: int = 100_000

    # Threads of the numeric libraries (BLAS, OpenMP) per worker process (0: the libraries'
    # defaults, one per core). The service scales by worker processes, one per core; threads of
    # their own only contend with the others and with the event loop (bench/predict.py
    # --compute-threads compares; figures in the README).
    compute_threads: int = Field(default=1, ge=0)

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


@lru_cache
def get_settings() -> Settings:
    return Settings()
