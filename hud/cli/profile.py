"""`hud [PROCESS]`: profile a running Tokio process (placeholder until the session lands)."""
from __future__ import annotations

import click

from hud.errors import Unsupported


@click.command("profile")
@click.argument("process", required=False)
@click.option("--pid", type=int, help="PID of the target process.")
def command(process: str, pid: int) -> None:
    """Profile PROCESS (a name) or --pid N."""
    raise Unsupported("profiling is not built yet", "follow issue 6")
