"""The ``poolvec`` command line: index folders of images into Milvus and search them by image.

Every command is a thin layer over the Python API (:class:`~poolvec.extractor.Extractor`,
:class:`~poolvec.indexer.ImageIndex`, :func:`poolvec.pooling.build`), one module per group of commands in
:mod:`.commands`. Exit codes are a contract (README's table, :data:`EXIT_CODES`); errors are one line on stderr
(``--debug`` or ``POOLVEC_DEBUG=1`` shows tracebacks, ``--verbose`` the libraries' own log lines).

Start-up stays instant: no module of the CLI imports torch, pymilvus or PIL at the top. Each command imports what
it needs when it runs, after the cheap checks (options, paths, a database held by another process) have passed.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
from typing import Annotated, Any

import typer

from poolvec.indexer.cli.commands import compare, embed, evaluate, index, info, maintain, review, search, serve
from poolvec.indexer.cli.output import EXIT_CODES, fail, out
from poolvec.indexer.cli.run import configure
from poolvec.indexer.errors import EXIT_INTERRUPTED

#: The end of ``poolvec --help``: README's exit-code table.
EPILOG = "Exit codes:\n" + "\n".join(
    f"  {code:>3}  {text.split(' (')[0].split(';')[0]}" for code, text in EXIT_CODES.items()
)


class _PlainHelp:
    """Help rows that read like Typer's documented examples: an option's value as its metavar (``--db PATH|URL``),
    nothing after a flag or an argument (Typer 0.29 would print their Python types: ``<bool>``, ``<list[Path]>``)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for p in params:
            if p.param_type_name == "argument" or getattr(p, "is_flag", False):
                p.display_type_rich = _no_type
        return params


def _no_type(ctx: Any = None) -> None:
    return None


class _Group(_PlainHelp, typer.core.TyperGroup):
    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        """Click's and Typer's own mistakes in the command line end as every other error does: one line on stderr
        naming the way to the help, exit 2 (README's table) — not a framed box of five lines."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        click = _click_exceptions()
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.NoArgsIsHelpError as e:  # `poolvec` alone: the help was printed, as Typer does
            sys.exit(e.exit_code)
        except click.UsageError as e:
            where = e.ctx.command_path if e.ctx is not None else "poolvec"
            fail(f"{' '.join(e.format_message().split())} (see `{where} --help`)", e.exit_code)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            fail(" ".join(e.format_message().split()), e.exit_code)
            sys.exit(e.exit_code)
        except typer.Abort:
            fail(EXIT_CODES[EXIT_INTERRUPTED], EXIT_INTERRUPTED)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)


def _click_exceptions() -> Any:
    """Click's exceptions as this Typer raises them (Typer 0.2x carries its own copy of Click)."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions


class _Command(_PlainHelp, typer.core.TyperCommand):
    pass


app = typer.Typer(
    name="poolvec",
    cls=_Group,
    help="Index folders of images into Milvus with CNN feature pooling, and search them by image.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
#: The commands, in the order ``--help`` lists them.
COMMANDS = {
    "index": index.index,
    "search": search.search,
    "dups": search.dups,
    "decide": review.decide,
    "undo": review.undo,
    "compare": compare.compare,
    "embed": embed.embed,
    "info": info.info,
    "drop": maintain.drop,
    "reroot": maintain.reroot,
    "tune": maintain.tune_command,
    "dba": maintain.dba_command,
    "copy": maintain.copy_command,
    "pooling": info.pooling_command,
    "eval": evaluate.eval_command,
    "serve": serve.serve_command,
}
for _name, _command in COMMANDS.items():
    app.command(_name, cls=_Command)(_command)


def _version(value: bool) -> None:
    if value:
        from importlib import metadata

        try:
            version = metadata.version("poolvec")
        except metadata.PackageNotFoundError:
            version = "unknown (not installed)"
        out.print(f"poolvec {version}")
        raise typer.Exit()


@app.callback()
def main_callback(
    debug: Annotated[
        bool, typer.Option("--debug", envvar="POOLVEC_DEBUG", help="Show tracebacks on errors (or POOLVEC_DEBUG=1).")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the libraries' log lines on stderr.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """poolvec: image similarity search with pooled CNN features in Milvus."""
    configure(debug, verbose)


def main() -> None:
    """The console script.

    Once the command has finished and every other exit handler has run (Milvus Lite's server, Ray, temporary
    files), the process ends without tearing down torch's modules one by one: that teardown alone is ~1.1 s of
    a 5 s one-query search (docs/BENCHMARKS.md, "CLI start-up") and does nothing a finished command needs.
    """
    status: list[int] = []
    atexit.register(_end_now, status)  # registered first, so it runs last
    signal.signal(signal.SIGTERM, _terminated)
    try:
        app(prog_name="poolvec")
    except SystemExit as e:
        if "torch" in sys.modules:
            status.append(e.code if isinstance(e.code, int) else 0 if e.code is None else 1)
        raise


def _terminated(signum: int, frame: Any) -> None:
    """SIGTERM (``timeout``, systemd, ``docker stop``) ends a command as Ctrl-C does: what was done is kept, one
    line says so, exit 130. ``serve`` has uvicorn's own handlers while it runs: a graceful stop."""
    raise KeyboardInterrupt


def _end_now(status: list[int]) -> None:
    """The last exit handler: flush what the user is owed, then leave (``os._exit``) with the command's status."""
    if not status:
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`| head`): nothing more to deliver
            stream.flush()
    os._exit(status[0])


__all__ = ["COMMANDS", "EXIT_CODES", "app", "main"]
