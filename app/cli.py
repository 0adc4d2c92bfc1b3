"""The ``ssreg`` command: serve, migrate, seed, demo, user, audit (verify, keygen,
checkpoint), store fsck, backup, restore, lifecycle run, db (roles, grant)."""

from __future__ import annotations

import getpass
import time
from pathlib import Path
from typing import Annotated

import typer

from app.enums import Role

app = typer.Typer(
    help="softsensor-registry: GxP registry for soft-sensor models.", no_args_is_help=True
)
user_app = typer.Typer(help="Users and service accounts.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
store_app = typer.Typer(help="The artifact store.", no_args_is_help=True)
lifecycle_app = typer.Typer(help="The versions' requalification lifecycle.", no_args_is_help=True)
db_app = typer.Typer(help="PostgreSQL roles: the schema owner and the runtime role.")
app.add_typer(user_app, name="user")
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")
app.add_typer(store_app, name="store")
app.add_typer(lifecycle_app, name="lifecycle")

CLI_ACTOR = f"cli:{getpass.getuser()}"
MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


@app.command()
def demo(seed: int = typer.Option(2026, help="Seed of the simulated campaign.")) -> None:
    """Run the calibration-transfer demo offline on simulated Raman data and print its arc."""
    from app.core.demo import main

    raise typer.Exit(main(seed=seed))


@app.command()
def migrate() -> None:
    """Bring the database schema to the newest Alembic revision (``upgrade head``) as the
    migration login (``REGISTRY_MIGRATION_DATABASE_URL``, default the service's); then grant
    the runtime role (``REGISTRY_RUNTIME_DB_ROLE``) its privileges and, with a signing key,
    seal the chain (a signed checkpoint with every table's row count)."""
    from alembic import command
    from alembic.config import Config

    from app.settings import get_settings

    settings = get_settings()
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    url = settings.migration_url
    cfg.attributes["database_url"] = url
    command.upgrade(cfg, "head")
    typer.echo(f"database at head: {_without_password(url)}")
    if settings.runtime_db_role is not None:
        _grant(url, settings.runtime_db_role)
    if settings.audit_signing_key is not None:
        _seal(url)


def _without_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _grant(url: str, runtime: str) -> None:
    from app.db.roles import grant_runtime
    from app.db.session import make_engine

    engine = make_engine(url)
    if engine.dialect.name != "postgresql":
        typer.echo("error: database roles are PostgreSQL's; SQLite has none", err=True)
        raise typer.Exit(1)
    try:
        with engine.begin() as conn:
            grant_runtime(conn, runtime)
    finally:
        engine.dispose()
    typer.echo(f"granted {runtime}: SELECT, INSERT and the audited UPDATE columns")


def _seal(url: str) -> None:
    from app.db.session import make_engine, unit_of_work
    from app.services.audit_seal import seal

    engine = make_engine(url)
    try:
        with unit_of_work(bind=engine) as session:
            checkpoint = seal(session)
    finally:
        engine.dispose()
    if checkpoint is None:
        typer.echo("audit chain empty or already sealed at its head: no seal written")
    else:
        typer.echo(
            f"sealed the audit chain at seq {checkpoint.seq} with key {checkpoint.key_id} "
            f"({sum((checkpoint.rows or {}).values())} rows counted)"
        )


@app.command()
def seed(
    credentials_file: Annotated[
        Path, typer.Option(help="Where the demo passwords are written (mode 600).")
    ] = Path("var/demo-credentials.txt"),
) -> None:
    """Create the demo users and data through the service layer (once; idempotent).

    The demo passwords and API key go into ``credentials_file`` (mode 600), never to the
    terminal: this prints where they are.
    """
    from app.db.session import unit_of_work
    from app.services.seed import seed_demo
    from app.store import get_store

    with unit_of_work() as session:
        result = seed_demo(session, get_store())
    for note in result.notes:
        typer.echo(note)
    if result.created:
        _write_private(credentials_file, [f"{u}\t{s}" for u, s in result.credentials.items()])
        typer.echo(f"demo users: {', '.join(result.credentials)}")
    if credentials_file.exists():
        mode = credentials_file.stat().st_mode & 0o777
        typer.echo(
            f"demo logins (user name, tab, password or API key) are in {credentials_file} "
            f"(mode {mode:o}); e.g. grep demo-qa {credentials_file} | cut -f2"
        )
    else:
        typer.echo(
            f"{credentials_file} does not exist: the demo logins were written where the first "
            "seed was told to (they are stored nowhere else)"
        )


def _write_private(path: Path, lines: list[str]) -> None:
    """Write ``lines`` to ``path`` readable by its owner only, from the first byte on."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # an existing file keeps its mode through O_CREAT
        out.write("\n".join(lines) + "\n")


@app.command("sample-request")
def sample_request(
    out: Annotated[Path, typer.Option(help="Where the JSON body is written.")] = Path(
        "plant-spectra.json"
    ),
    n: Annotated[int, typer.Option(min=1, max=336, help="How many spectra.")] = 3,
    purpose: Annotated[str, typer.Option(help="The body's purpose.")] = "monitoring",
) -> None:
    """Write a prediction body of simulated plant-probe spectra (BATCH-2026-003, which no demo
    model was trained or validated on) and print the titer the simulator knows for each."""
    import json

    from app.enums import PredictionPurpose
    from app.services.sample_request import plant_sample_request

    try:
        chosen = PredictionPurpose(purpose)
    except ValueError as exc:
        allowed = ", ".join(p.value for p in PredictionPurpose)
        raise typer.BadParameter(f"purpose must be one of {allowed}") from exc
    body, references = plant_sample_request(n, purpose=chosen)
    out.write_text(json.dumps(body))
    typer.echo(f"wrote {len(body['spectra'])} plant-probe spectra to {out}")
    for sample_id, ref in zip(body["sample_ids"], references, strict=True):
        typer.echo(f"{sample_id}\ttiter {ref:.4f} g/L (simulated reference)")


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = typer.Option(1, help="Worker processes (PostgreSQL for more than one)."),
) -> None:
    """Serve the HTTP API with uvicorn (run `ssreg migrate` first): request heads time out
    after REGISTRY_HEADER_TIMEOUT_SECONDS (app/server.py).

    Logs are JSON lines on stderr, one per request (method, route, status, duration, request
    id, user) at REGISTRY_LOG_LEVEL (INFO). With several workers, /metrics adds up every
    worker's figures through prometheus-client's multiprocess directory:
    PROMETHEUS_MULTIPROC_DIR if set (emptied here, before the workers start), else a new
    temporary directory.
    """
    import os
    import tempfile

    from app.settings import get_settings

    settings = get_settings()
    metrics_dir = settings.prometheus_multiproc_dir
    if metrics_dir is None and workers > 1:
        metrics_dir = Path(tempfile.mkdtemp(prefix="ssreg-metrics-"))
    if metrics_dir is not None:
        # prometheus-client reads the variable once, when imported: set it first (the
        # workers inherit it), then empty the directory of a previous run's files. The
        # import already writes this process's value files there, so the directory must
        # exist before it.
        metrics_dir.mkdir(parents=True, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        from app.telemetry.metrics import clear_multiprocess_dir

        clear_multiprocess_dir(metrics_dir)
        typer.echo(f"metrics of every worker kept in {metrics_dir}", err=True)

    import uvicorn

    from app.server import uvicorn_options
    from app.telemetry.logs import log_config

    uvicorn.run(
        **uvicorn_options(),
        host=host,
        port=port,
        workers=workers,
        log_config=log_config(settings.log_level),
        log_level=settings.log_level.lower(),
        access_log=False,  # the app logs each request itself, with its id and user
    )


@user_app.command("create")
def user_create(
    username: Annotated[str, typer.Option(help="Login name.")],
    role: Annotated[Role, typer.Option(help="admin, developer, qa, plant or auditor.")],
    full_name: Annotated[str, typer.Option(help="Person or system behind the account.")],
    reason: Annotated[str, typer.Option(help="Why the account is created.")] = "bootstrap",
    password: Annotated[
        str | None,
        typer.Option(help="Password (prompted if omitted; not used for role plant)."),
    ] = None,
) -> None:
    """Create a user (e.g. the first admin) or a service account (prints its API key once)."""
    from app.db.session import unit_of_work
    from app.errors import DomainError
    from app.services.auth import create_user

    if role is not Role.plant and password is None:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        with unit_of_work() as session:
            created = create_user(
                session,
                username=username,
                full_name=full_name,
                role=role,
                password=password,
                actor=CLI_ACTOR,
                reason=reason,
            )
    except DomainError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"created {role.value} {username!r}")
    if created.api_key:
        typer.echo(f"API key (shown once, stored hashed): {created.api_key}")


@audit_app.command("verify")
def audit_verify(
    full: Annotated[
        bool,
        typer.Option("--full", help="Re-check the whole chain, every checkpoint and every record."),
    ] = False,
    reconcile: Annotated[
        bool,
        typer.Option(help="Compare the records with their audited states."),
    ] = True,
    record: Annotated[
        bool,
        typer.Option(
            "--record",
            help="With --full: record the reconciliation's result (an audited event, sealed), "
            "which GET /audit/verify reports and reconciles incrementally from (for cron).",
        ),
    ] = False,
) -> None:
    """Verify the audit chain from its last signed checkpoint (``--full``: all of it, and
    every checkpoint) and reconcile the records with their audited states (the rows written
    since the last recorded full reconciliation; ``--full``: every record); exit 1 on any
    finding (each printed)."""
    from app.db.session import unit_of_work
    from app.enums import ReconcileMode
    from app.errors import DomainError
    from app.services.audit_seal import record_reconciliation
    from app.services.audit_verify import not_checked, verify
    from app.telemetry import metrics

    if record and not (full and reconcile):
        typer.echo("error: --record records a full reconciliation: give --full", err=True)
        raise typer.Exit(2)
    mode = ReconcileMode.incremental if reconcile else ReconcileMode.none
    with unit_of_work(read_only=True) as session:
        report = verify(session, full=full, reconciliation=mode)
    # Seen by /metrics when this command shares the servers' PROMETHEUS_MULTIPROC_DIR.
    metrics.record_chain_verification(valid=report.valid, events=report.head_seq, at=time.time())
    for note in report.notes:
        typer.echo(f"note: {note}")
    where = f"from the checkpoint at seq {report.checked_from_seq}"
    if report.checked_from_seq == 0:
        where = "whole" + (" and anchored" if report.anchored else ", not anchored")
    if report.chain_valid:
        typer.echo(
            f"audit chain valid: {report.head_seq} events ({report.events} read, {where}; "
            f"{report.checkpoints_checked} checkpoint signatures checked"
            + (f", key {report.key_id})" if report.key_id else ")")
        )
    else:
        first = f" at seq {report.first_bad_seq}" if report.first_bad_seq else ""
        typer.echo(f"audit chain BROKEN{first} ({report.events} events read, {where}):", err=True)
        for problem in report.problems:
            typer.echo(f"  {problem}", err=True)
    rec, last = report.reconciliation, report.last_full
    if last is not None:
        typer.echo(
            f"last recorded full reconciliation: event {last.seq} at {last.recorded_at} "
            f"(head seq {last.head_seq}), {last.rows_checked} rows, "
            + ("clean" if last.valid else f"{last.differences} DIFFERENCE(S)")
        )
    if rec is not None:
        extent = "all rows" if rec.since_seq is None else f"rows written after seq {rec.since_seq}"
        if rec.valid:
            typer.echo(
                f"records reconciled: {rec.rows_checked} rows match their audited state ({extent})"
            )
        else:
            typer.echo(
                f"records DIFFER from the audit trail: {len(rec.differences)} finding(s) in "
                f"{rec.rows_checked} rows ({extent})",
                err=True,
            )
            for difference in rec.differences:
                typer.echo(f"  {difference.describe()}", err=True)
        if rec.since_seq is not None:
            typer.echo(f"not checked: {not_checked(rec.since_seq)}")
    if record and rec is not None and report.chain_valid:
        try:
            with unit_of_work() as session:
                seq, sealed = record_reconciliation(
                    session, rec, head_seq=report.head_seq, actor=CLI_ACTOR
                )
        except DomainError as exc:
            typer.echo(f"error: not recorded: {exc.detail}", err=True)
            raise typer.Exit(1) from exc
        typer.echo(f"recorded: audit.reconcile event {seq}, sealed with key {sealed.key_id}")
    elif record:
        typer.echo("not recorded: the chain is broken", err=True)
    if not report.valid:
        raise typer.Exit(1)


@audit_app.command("keygen")
def audit_keygen(
    path: Annotated[Path, typer.Argument(help="Where the private key is written (mode 0600).")],
) -> None:
    """Write a new Ed25519 signing key for the chain's checkpoints (never overwrites) and
    print its public key; point REGISTRY_AUDIT_SIGNING_KEY at it. Keep it outside the
    database and its backups' reach."""
    from app.errors import DomainError
    from app.services.checkpoints import keygen

    try:
        public = keygen(path)
    except DomainError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"wrote {path}")
    typer.echo(f"public key (base64, raw Ed25519): {public.b64}")
    typer.echo(f"key id: {public.key_id}")


@audit_app.command("checkpoint")
def audit_checkpoint() -> None:
    """Seal the chain now: a signed checkpoint of the head with every table's row count (for
    cron; rows deleted from the prediction log show against it)."""
    from app.settings import get_settings

    if get_settings().audit_signing_key is None:
        typer.echo("error: no signing key (REGISTRY_AUDIT_SIGNING_KEY)", err=True)
        raise typer.Exit(1)
    _seal(get_settings().database_url)


@db_app.command("roles")
def db_roles(
    admin_url: Annotated[
        str, typer.Option(help="A superuser's URL (any database but the registry's).")
    ],
    database: Annotated[str, typer.Option(help="The registry's database.")] = "registry",
    owner: Annotated[str, typer.Option(help="The schema owner (runs migrations).")] = (
        "registry_owner"
    ),
    runtime: Annotated[str, typer.Option(help="The role the service runs as.")] = "registry_app",
    owner_password: Annotated[
        str | None, typer.Option(envvar="REGISTRY_OWNER_PASSWORD", help="(prompted if unset)")
    ] = None,
    runtime_password: Annotated[
        str | None, typer.Option(envvar="REGISTRY_RUNTIME_PASSWORD", help="(prompted if unset)")
    ] = None,
    admin_password_file: Annotated[
        Path | None, typer.Option(help="A file holding the admin URL's password (a secret).")
    ] = None,
    owner_password_file: Annotated[
        Path | None, typer.Option(help="A file holding the owner's password (a secret).")
    ] = None,
    runtime_password_file: Annotated[
        Path | None, typer.Option(help="A file holding the runtime role's password (a secret).")
    ] = None,
) -> None:
    """Create the owner and runtime roles and the database owned by the owner (once, as a
    superuser; existing ones are kept). Then: ``ssreg migrate`` with
    REGISTRY_MIGRATION_DATABASE_URL (owner) and REGISTRY_RUNTIME_DB_ROLE, and serve with
    REGISTRY_DATABASE_URL (runtime). A password comes from its option, or from its file
    (docker compose mounts secrets as files; surrounding whitespace is dropped, as the
    service drops it from its own secret files), or is prompted for."""
    from sqlalchemy.engine import make_url

    from app.db.roles import create_roles, prepare_schema
    from app.db.session import make_engine

    owner_password = _password(owner_password, owner_password_file, "--owner-password")
    runtime_password = _password(runtime_password, runtime_password_file, "--runtime-password")
    owner_password = owner_password or typer.prompt(f"password of {owner}", hide_input=True)
    runtime_password = runtime_password or typer.prompt(f"password of {runtime}", hide_input=True)
    if admin_password_file is not None:
        admin_password = _password(None, admin_password_file, "--admin-url's password")
        if make_url(admin_url).password is not None:
            typer.echo(
                "error: --admin-url carries a password and --admin-password-file too", err=True
            )
            raise typer.Exit(1)
        admin_url = make_url(admin_url).set(password=admin_password).render_as_string(False)
    admin = make_engine(admin_url)
    try:
        with admin.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            done = create_roles(
                conn,
                owner=owner,
                owner_password=owner_password,
                runtime=runtime,
                runtime_password=runtime_password,
                database=database,
            )
    finally:
        admin.dispose()
    owner_url = make_url(admin_url).set(database=database)
    engine = make_engine(owner_url.render_as_string(hide_password=False))
    try:
        with engine.begin() as conn:
            prepare_schema(conn, owner=owner)
    finally:
        engine.dispose()
    for line in done:
        typer.echo(line)
    typer.echo(f"roles ready: {owner} owns {database}; {runtime} may connect")


def _password(given: str | None, file: Path | None, name: str) -> str | None:
    """A password given on the command line or read from ``file`` (not both)."""
    if file is None:
        return given
    if given is not None:
        typer.echo(f"error: {name} given twice, directly and as a file", err=True)
        raise typer.Exit(1)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        typer.echo(f"error: cannot read {name} from {file}: {exc.strerror}", err=True)
        raise typer.Exit(1) from exc
    # Stripped as pydantic-settings strips the service's secret files: both read one password.
    password = text.strip()
    if not password:
        typer.echo(f"error: {file} is empty ({name})", err=True)
        raise typer.Exit(1)
    return password


@db_app.command("grant")
def db_grant(
    runtime: Annotated[
        str | None, typer.Option(help="The runtime role (default REGISTRY_RUNTIME_DB_ROLE).")
    ] = None,
) -> None:
    """Grant the runtime role SELECT, INSERT and the audited UPDATE columns on every table
    (as the migration login; ``ssreg migrate`` does it after upgrading)."""
    from app.settings import get_settings

    settings = get_settings()
    role = runtime or settings.runtime_db_role
    if role is None:
        typer.echo("error: name the runtime role (--runtime or REGISTRY_RUNTIME_DB_ROLE)", err=True)
        raise typer.Exit(1)
    _grant(settings.migration_url, role)


@store_app.command("fsck")
def store_fsck(
    collect: Annotated[
        bool,
        typer.Option(
            "--collect",
            help="Also remove temporary files left by interrupted writes and artifacts no "
            "record references, once older than the grace period; audited (store.collect).",
        ),
    ] = False,
    grace: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Grace period in seconds (default REGISTRY_STORE_COLLECT_GRACE_SECONDS). "
            "Anything younger stays: it may belong to a request in flight. 0 only while no "
            "server or command writes to this store.",
        ),
    ] = None,
    reason: Annotated[str, typer.Option(help="Why (recorded with the audit event).")] = (
        "store maintenance: ssreg store fsck --collect"
    ),
) -> None:
    """Report missing, corrupt, repointed (a record pointing at another digest than its
    audited one) and unreferenced artifacts and temporary files left by interrupted writes;
    exit 1 if any artifact is missing, corrupt or repointed."""
    from app.db.session import unit_of_work
    from app.services.fsck import collect as collect_store
    from app.services.fsck import fsck
    from app.settings import get_settings
    from app.store import get_store

    store = get_store()
    with unit_of_work(read_only=True) as session:
        report = fsck(session, store)
    typer.echo(f"checked {report.checked} referenced artifacts")
    for label, digests in (
        ("missing", report.missing),
        ("corrupt", report.corrupt),
        ("repointed", report.repointed),
        ("unreferenced", report.unreferenced),
    ):
        typer.echo(f"{label}: {len(digests)}")
        for d in digests:
            typer.echo(f"  {d}")
    now = time.time()
    typer.echo(f"temporary: {len(report.temporary)}")
    for tmp in report.temporary:
        typer.echo(f"  {tmp.path}  {tmp.size} bytes, {_age(now - tmp.mtime)} old")
    if not report.healthy:
        if collect:
            typer.echo("not collecting: artifacts are missing or corrupt", err=True)
        raise typer.Exit(1)
    if not collect:
        return
    grace_seconds = get_settings().store_collect_grace_seconds if grace is None else grace
    with unit_of_work() as session:
        done = collect_store(
            session, store, grace_seconds=grace_seconds, actor=CLI_ACTOR, reason=reason
        )
    typer.echo(
        f"collected (grace {_age(grace_seconds)}): removed {len(done.removed_temporary)} "
        f"temporary file(s) and {len(done.removed_artifacts)} unreferenced artifact(s), "
        f"{done.removed_bytes} bytes"
    )
    for tmp in done.removed_temporary:
        typer.echo(f"  removed temporary {tmp.path}  {tmp.size} bytes")
    for artifact in done.removed_artifacts:
        typer.echo(f"  removed unreferenced {artifact.digest}  {artifact.size} bytes")
    if done.kept_temporary or done.kept_unreferenced:
        typer.echo(
            f"kept, younger than the grace period or in use: {done.kept_temporary} "
            f"temporary file(s), {done.kept_unreferenced} unreferenced artifact(s)"
        )
    if done.audit_seq is not None:
        typer.echo(f"audited: store.collect, audit event {done.audit_seq}")


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@app.command("backup")
def backup_command(
    directory: Annotated[Path, typer.Argument(help="A new or empty directory.")],
) -> None:
    """Back up the database (SQLite: online backup; PostgreSQL: pg_dump) and the artifacts its
    records name, with manifest.json listing the sha256 of every file."""
    from app.errors import DomainError
    from app.services.backup import backup
    from app.settings import get_settings
    from app.store import get_store

    try:
        report = backup(get_settings().database_url, get_store(), directory)
    except DomainError as exc:
        typer.echo(f"backup failed: {exc.detail}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        f"backed up to {report.directory}: {report.database_file} (schema "
        f"{report.revision}, audit head {report.audit_seq}), {report.artifacts} artifact(s), "
        f"{report.artifact_bytes} bytes"
    )
    if report.unreferenced_skipped:
        typer.echo(f"not copied: {report.unreferenced_skipped} unreferenced artifact(s)")
    typer.echo(f"manifest.json sha256 {report.manifest_sha256} (keep it apart from the backup)")


@app.command("restore")
def restore_command(
    directory: Annotated[Path, typer.Argument(help="A directory written by ssreg backup.")],
    manifest_sha256: Annotated[
        str | None,
        typer.Option(help="The manifest's sha256 printed by the backup: refuse if it differs."),
    ] = None,
    reason: Annotated[str, typer.Option(help="Why (recorded with the audit event).")] = (
        "restore from backup"
    ),
) -> None:
    """Restore a backup into an empty database and store: the manifest is checked first (any
    difference refuses the restore), then the restored audit chain and store are verified."""
    from app.db.session import dispose_engines, unit_of_work
    from app.errors import DomainError
    from app.services.audit import verify_chain
    from app.services.backup import record_restore, restore
    from app.services.fsck import fsck
    from app.settings import get_settings
    from app.store import get_store

    store = get_store()
    try:
        verified, report = restore(
            get_settings().database_url, store, directory, manifest_sha256=manifest_sha256
        )
    except DomainError as exc:
        typer.echo(f"restore refused: {exc.detail}", err=True)
        raise typer.Exit(1) from exc
    dispose_engines()  # the database file or schema is new under the engine's feet
    with unit_of_work() as session:
        seq = record_restore(session, verified, actor=CLI_ACTOR, reason=reason)
    typer.echo(
        f"restored {report.dialect} database (schema {report.revision}, audit head "
        f"{report.audit_seq}) and {report.artifacts_restored} artifact(s) from {directory}, "
        f"manifest sha256 {report.manifest_sha256}; audited: backup.restore, event {seq}"
    )
    with unit_of_work(read_only=True) as session:
        chain = verify_chain(session)
        checked = fsck(session, store)
    typer.echo(
        f"audit chain {'valid' if chain.valid else 'BROKEN'}: {chain.events} events; store: "
        f"{checked.checked} artifacts checked, {len(checked.missing)} missing, "
        f"{len(checked.corrupt)} corrupt, {len(checked.unreferenced)} unreferenced"
    )
    if not chain.valid or not checked.healthy:
        raise typer.Exit(1)


@lifecycle_app.command("run")
def lifecycle_run() -> None:
    """Record requalification_due for every approved or requalified version past its review
    date (for cron; running it again changes nothing)."""
    from app.db.session import unit_of_work
    from app.services.lifecycle import record_due_reviews

    with unit_of_work() as session:
        done = record_due_reviews(session, actor=CLI_ACTOR)
        lines = [
            f"{name}: {event.from_status.value} -> {event.to_status.value} ({event.reason})"
            for name, event in done
        ]
    for line in lines:
        typer.echo(line)
    typer.echo(f"{len(lines)} version(s) made requalification_due")


if __name__ == "__main__":  # python -m app.cli, as the console script ssreg
    app()
