"""The ``ssreg`` command: serve, migrate, seed, demo, user, audit verify, store fsck, backup,
restore, lifecycle run."""

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
app.add_typer(user_app, name="user")
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
    """Bring the database schema to the newest Alembic revision (``upgrade head``)."""
    from alembic import command
    from alembic.config import Config

    from app.settings import get_settings

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    url = get_settings().database_url
    cfg.attributes["database_url"] = url
    command.upgrade(cfg, "head")
    typer.echo(f"database at head: {url}")


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
        # workers inherit it), then empty the directory of a previous run's files.
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
def audit_verify() -> None:
    """Walk the hash chain; exit 1 if an event was edited, deleted or inserted."""
    from app.db.session import unit_of_work
    from app.services.audit import verify_chain
    from app.telemetry import metrics

    with unit_of_work(read_only=True) as session:
        report = verify_chain(session)
    # Seen by /metrics when this command shares the servers' PROMETHEUS_MULTIPROC_DIR.
    metrics.record_chain_verification(valid=report.valid, events=report.events, at=time.time())
    if report.valid:
        typer.echo(f"audit chain valid: {report.events} events")
        return
    typer.echo(
        f"audit chain BROKEN at seq {report.first_bad_seq}: {report.problem} "
        f"({report.events} events read)",
        err=True,
    )
    raise typer.Exit(1)


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
    """Report missing, corrupt and unreferenced artifacts and temporary files left by
    interrupted writes; exit 1 if any artifact is missing or corrupt."""
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
