"""`hud doctor`: check privileges and kernel features (placeholder)."""
from __future__ import annotations

import click


@click.command("doctor")
def command() -> None:
    """Check this host and a target for what hud needs."""
    click.echo("doctor: not built yet")
