"""The commands' entry point: every error a user can cause is one line on stderr and exit status 2,
never a traceback (`SLIP_DEBUG=1` shows it).

The same file is in slip_data, slip_train and slip_eval (one behaviour, no import between the
packages; tests/test_shared_modules.py keeps the copies equal).
"""

import os
import sys

import typer


def error_line(exc: BaseException, command: str) -> str:
    """One line for `exc`: an exception group's first error; an OS error as `COMMAND: FILE:
    reason` (its own text names no stage, and no file when it comes from a write); otherwise
    the message's last line (a DataLoader worker's error arrives with its traceback)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
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
    commands' own errors become one `error:` line."""
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
        if os.environ.get("SLIP_DEBUG"):
            raise
        command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), program)
        typer.echo(f"error: {error_line(exc, command)}", err=True)
        sys.exit(2)
    sys.exit(result if isinstance(result, int) else 0)
