"""The commands' entry point. An error a user can cause (a bad flag or value, a missing or
unreadable file, a full disk, a stage run out of order) is one line on stderr and exit status 2,
not a traceback (`SLIP_DEBUG=1` shows it). Anything else is a bug of the package: its traceback,
then a line asking for a report, and exit status 1, so a bug is not taken for a bad input.

The same file is in slip_data, slip_train and slip_eval (one behaviour, no import between the
packages; tests/test_shared_modules.py keeps the copies equal).
"""

import os
import sys
import traceback

import typer

PACKAGE = __name__.split(".")[0]

USER_ERRORS = (OSError, ValueError, RuntimeError, MemoryError)
"""Errors of the user's input or machine: a file, folder, disk or network (OSError); a bad value,
which the packages and their libraries raise ValueError for; a run that cannot go on (another
writer, Ray missing, CUDA out of memory: RuntimeError); too little memory."""

BUGS = (NotImplementedError, RecursionError)
"""RuntimeErrors that only a bug raises."""


def _first(exc: BaseException) -> BaseException:
    """An exception group's first error (the crawl's concurrent workers raise in a group)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def is_user_error(exc: BaseException) -> bool:
    """The package's own error types, and the USER_ERRORS that are not BUGS."""
    exc = _first(exc)
    if type(exc).__module__.split(".")[0] == PACKAGE:
        return True
    return isinstance(exc, USER_ERRORS) and not isinstance(exc, BUGS)


def error_line(exc: BaseException, command: str) -> str:
    """One line for `exc`: an exception group's first error; an OS error as `COMMAND: FILE:
    reason` (its own text names no stage, and no file when it comes from a write); otherwise
    the message's last line (a DataLoader worker's error arrives with its traceback)."""
    exc = _first(exc)
    if isinstance(exc, OSError) and exc.strerror:
        files = " -> ".join(str(name) for name in (exc.filename, exc.filename2) if name is not None)
        return f"{command}: {files}: {exc.strerror}" if files else f"{command}: {exc.strerror}"
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _is_usage_error(exc: BaseException) -> bool:
    """click's UsageError, in typer's own copy of click (typer >= 0.24) or in click itself."""
    return any(cls.__name__ == "UsageError" for cls in type(exc).__mro__)


def run(app: typer.Typer, program: str) -> None:
    """Run `app` as the program `program`: click's usage errors (a bad flag or value) and the
    user errors of the commands become one `error:` line; a bug, its traceback and a line asking
    for a report."""
    try:
        result = app(standalone_mode=False)
    except typer.Abort:
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if _is_usage_error(exc):
            where = exc.ctx.command_path if getattr(exc, "ctx", None) else program
            typer.echo(f"error: {exc.format_message()} (see `{where} --help`)", err=True)
            sys.exit(2)
        if not is_user_error(exc):
            traceback.print_exc()
            typer.echo(
                f"error: this is a bug in {program}, not in your input; please report it on the "
                "project's issue tracker with the command and the traceback above",
                err=True,
            )
            sys.exit(1)
        if os.environ.get("SLIP_DEBUG"):
            raise
        command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), program)
        typer.echo(f"error: {error_line(exc, command)}", err=True)
        sys.exit(2)
    sys.exit(result if isinstance(result, int) else 0)
