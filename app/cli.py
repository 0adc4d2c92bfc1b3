"""The ``ssreg`` command: serve, migrate, seed, demo, user, audit verify, store fsck,
lifecycle run."""

from __future__ import annotations

import getpass
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
    """Create the demo users and data through the service layer (once; idempotent)."""
    import os

    from app.db.session import unit_of_work
    from app.services.seed import seed_demo
    from app.store import get_store

    with unit_of_work() as session:
        result = seed_demo(session, get_store())
    for note in result.notes:
        typer.echo(note)
    if result.created:
        credentials_file.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"{user}\t{secret}" for user, secret in result.credentials.items()]
        credentials_file.write_text("\n".join(lines) + "\n")
        os.chmod(credentials_file, 0o600)
    if credentials_file.exists():
        typer.echo(f"demo logins (user, password or API key) in {credentials_file}:")
        typer.echo(credentials_file.read_text().rstrip())


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
    after REGISTRY_HEADER_TIMEOUT_SECONDS (app/server.py)."""
    import uvicorn

    from app.server import uvicorn_options

    uvicorn.run(**uvicorn_options(), host=host, port=port, workers=workers)


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

    with unit_of_work(read_only=True) as session:
        report = verify_chain(session)
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
def store_fsck() -> None:
    """Report missing, corrupt and unreferenced artifacts; exit 1 if any is missing or corrupt."""
    from app.db.session import unit_of_work
    from app.services.fsck import fsck
    from app.store import get_store

    with unit_of_work(read_only=True) as session:
        report = fsck(session, get_store())
    typer.echo(f"checked {report.checked} referenced artifacts")
    for label, digests in (
        ("missing", report.missing),
        ("corrupt", report.corrupt),
        ("unreferenced", report.unreferenced),
    ):
        typer.echo(f"{label}: {len(digests)}")
        for d in digests:
            typer.echo(f"  {d}")
    if not report.healthy:
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
