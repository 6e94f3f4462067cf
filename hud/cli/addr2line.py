"""`hud addr2line`: addresses to function, file:line and inlines, like binutils
`addr2line -f -i -C` (also our test hook against it)."""
from __future__ import annotations

import sys
from typing import Optional

import click

from hud.errors import BadInput, TargetNotFound, UsageError
from hud.symbolize.text import format_frames


def _parse(text: str) -> int:
    t = text.strip().lower()
    if t.startswith("0x"):
        t = t[2:]
    try:
        value = int(t, 16)   # binutils reads addresses as hex, with or without 0x
    except ValueError:
        raise UsageError(f"not an address: {text!r}", "give hex addresses like 0x4011d6") \
            from None
    if value < 0 or value >= 1 << 64:
        raise UsageError(f"address out of range: {text!r}")
    return value


@click.command("addr2line")
@click.option("-e", "--exe", "exe", type=click.Path(), help="ELF file; addresses are its "
              "virtual addresses (as nm and objdump show them).")
@click.option("--pid", type=int, help="Running process; addresses are runtime addresses.")
@click.option("-a", "--addresses", "show_addresses", is_flag=True,
              help="Print each address before its frames.")
@click.option("-s", "--basenames", is_flag=True, help="Print file names without directories.")
@click.option("-r", "--return-addresses", is_flag=True,
              help="Treat addresses as return addresses (look up address - 1).")
@click.option("--debug-file", "debug_files", multiple=True, type=click.Path(),
              help="Separate debug file to use (matched by build-id); repeatable.")
@click.option("--debug-dir", "debug_dirs", multiple=True, type=click.Path(),
              help="Directory searched for debug files before /usr/lib/debug; repeatable.")
@click.option("--debuginfod", "debuginfod_urls", multiple=True, metavar="URL",
              help="debuginfod server to fetch missing debug files from by build-id "
              "(default: $DEBUGINFOD_URLS); repeatable.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Processes that share a big batch of addresses (default: one per "
              "usable CPU, at most 4; 1: this one only).")
@click.option("--no-symbol-cache", is_flag=True, help="Keep no resolved symbols on disk "
              "(default: /var/cache/hud/symbols as root; HUD_CACHE_DIR overrides).")
# binutils' -f -i -C are always on here; accepted so muscle memory works.
@click.option("-f", "--functions", "_f", is_flag=True, hidden=True)
@click.option("-i", "--inlines", "_i", is_flag=True, hidden=True)
@click.option("-C", "--demangle", "_c", is_flag=True, hidden=True)
@click.argument("addresses", nargs=-1)
def command(exe: Optional[str], pid: Optional[int], show_addresses: bool, basenames: bool,
            return_addresses: bool, debug_files: tuple, debug_dirs: tuple,
            debuginfod_urls: tuple, jobs: Optional[int], no_symbol_cache: bool, _f: bool,
            _i: bool, _c: bool, addresses: tuple) -> None:
    """Resolve ADDRESSES (hex; read from stdin when none) in an ELF file or a process."""
    from hud.linux import procfs
    from hud.symbolize import Symbolizer, debuginfod
    from hud.symbolize.diskcache import default_cache_dir

    if (exe is None) == (pid is None):
        raise UsageError("give exactly one of -e FILE or --pid PID")
    if addresses:
        addrs = [_parse(a) for a in addresses]
    else:
        addrs = [_parse(w) for line in sys.stdin for w in line.split()]
    cache_dir = None if no_symbol_cache else default_cache_dir()
    fetcher = debuginfod.configured(debuginfod_urls,
                                    lambda text: click.echo(f"hud: {text}", err=True))
    with Symbolizer(debug_dirs=debug_dirs, debug_files=debug_files,
                    cache_dir=cache_dir, debuginfod=fetcher, jobs=jobs) as sym:
        if pid is not None:
            if not procfs.alive(pid):
                raise TargetNotFound(f"no process {pid}")
            proc = sym.for_process(pid)
            results = proc.symbolize_addresses(addrs, return_addresses)
        else:
            obj, why = sym.object_for_path(exe)
            if obj is None:
                raise BadInput(why, "give an ELF executable or shared library")
            results = sym.symbolize_file(exe, addrs, return_addresses=return_addresses)
        # One buffered stream, not click.echo: it flushes (a write(2)) per address.
        out = sys.stdout
        for a, frames in zip(addrs, results):
            out.write(format_frames(frames, a if show_addresses else None, basenames))
            out.write("\n")
        out.flush()
    from hud.cli import exit_without_teardown
    exit_without_teardown()
