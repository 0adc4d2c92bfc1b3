"""The ``ssreg`` command."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="softsensor-registry: GxP registry for soft-sensor models.", no_args_is_help=True
)


@app.command()
def demo(seed: int = typer.Option(2026, help="Seed of the simulated campaign.")) -> None:
    """Run the calibration-transfer demo offline on simulated Raman data and print its arc."""
    from app.core.demo import main

    raise typer.Exit(main(seed=seed))
