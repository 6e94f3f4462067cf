"""`hud addr2line`: addresses to function, file:line and inlines (placeholder)."""
from __future__ import annotations

import click

from hud.errors import Unsupported


@click.command("addr2line")
@click.option("-e", "--exe", "exe", type=click.Path(), help="ELF file.")
@click.argument("addresses", nargs=-1)
def command(exe: str, addresses: tuple) -> None:
    """Resolve ADDRESSES in an ELF file or a running process."""
    raise Unsupported("addr2line is not built yet", "follow issue 4")
