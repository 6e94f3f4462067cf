"""Command line: `hud [PROCESS] [options]` profiles; `hud doctor`, `hud addr2line` help."""
from __future__ import annotations

import errno
import os
import sys
from typing import Optional

import click

from hud import __version__
from hud.errors import HudError, ResourceExhausted

# Subcommands live in their own modules; each exposes a click command named `command`.
_SUBCOMMANDS = {
    "doctor": "hud.cli.doctor",
    "addr2line": "hud.cli.addr2line",
}
_DEFAULT = "profile"
_DEFAULT_MODULE = "hud.cli.profile"
_exit_without_teardown = False


class _HudGroup(click.Group):
    """A group whose first positional argument is a process unless it names a subcommand.

    `hud my-app` and `hud --pid 1 --headless` profile; `hud doctor` runs a subcommand.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> Optional[click.Command]:
        module = _SUBCOMMANDS.get(name) or (_DEFAULT_MODULE if name == _DEFAULT else None)
        if module is None:
            return None
        import importlib
        return importlib.import_module(module).command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in _SUBCOMMANDS and args[0] not in ("--help", "-h",
                                                                          "--version")):
            args = [_DEFAULT, *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage("hud", "[PROCESS] [OPTIONS] | COMMAND [ARGS]...")

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_help_text(ctx, formatter)
        with formatter.section("Profiling (hud [PROCESS] --help for every option)"):
            formatter.write_dl([
                ("hud my-app", "live view of the process named my-app"),
                ("hud --pid N --headless --duration 10 --export t.json",
                 "record 10 s, write a Chrome trace"),
            ])


def _version_text() -> str:
    try:
        from hud._build import COMMIT  # written by scripts/build-pyz
    except ImportError:
        COMMIT = "source"
    return f"hud {__version__} ({COMMIT})"


@click.group(cls=_HudGroup, context_settings={"help_option_names": ["-h", "--help"],
                                              "max_content_width": 80})
@click.version_option(message="%(version)s", version=_version_text())
def cli() -> None:
    """Find what blocks a running Tokio runtime's worker threads."""


def main(argv: Optional[list[str]] = None) -> None:
    """Run the CLI; every HudError becomes one line, a hint and its exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    code = 0
    try:
        # Not cli.main(): it turns a closed stdout into a silent exit 1 and lets every
        # other write error (a full disk) out as a traceback.
        with cli.make_context("hud", args) as ctx:
            cli.invoke(ctx)
    except click.exceptions.Exit as e:     # --help, --version
        code = e.exit_code
    except HudError as e:
        _fail(e.message, e.hint, e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt, EOFError):
        sys.exit(130)
    except OSError as e:
        _output_failed(e)
    if _exit_without_teardown and code == 0:
        _exit_now()
    sys.exit(code)


def _output_failed(e: OSError) -> None:
    """An OSError that reached here is a write to stdout or stderr: the commands turn
    their own files' errors into HudErrors."""
    _detach_stdout()
    if e.errno == errno.EPIPE:
        sys.exit(0)    # the reader has what it wanted (`hud addr2line ... | head`)
    what = f"{e.filename}: " if e.filename else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        _fail(f"cannot write the output: {what}{e.strerror or e}",
              "free disk space or write elsewhere", ResourceExhausted.exit_code)
    _fail(f"cannot write the output: {what}{e.strerror or e}",
          "check where the output goes", HudError.exit_code)


def _detach_stdout() -> None:
    # Text still buffered for the dead stdout would fail again, as a traceback, when
    # the interpreter flushes it at exit.
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):
        pass


def exit_without_teardown() -> None:
    """Ask `main` to end the process without freeing the heap object by object once
    the command has returned: for commands that leave only memory behind (files closed,
    caches written). After 20,000 addresses `hud addr2line` holds ~10^6 objects whose
    one-by-one release took 0.13 s of a 1.8 s run."""
    global _exit_without_teardown
    _exit_without_teardown = True


def _exit_now() -> None:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError as e:
        _output_failed(e)
    os._exit(0)


def _fail(message: str, hint: str, code: int) -> None:
    click.echo(f"hud: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    sys.exit(code)
