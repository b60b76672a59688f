"""Each package's entry point (entry.py): an error a user can cause is one `error:` line and exit
status 2; a bug (a KeyError, say) is its traceback, a line asking for a report and exit status 1,
so it is not mistaken for a bad input."""

import importlib

import pytest
import typer

from slip_data.pipeline import StageOrderError
from slip_eval.data import DataError
from slip_train.config import ConfigError

PROGRAMS = {"slip_data": "slip-data", "slip_train": "slip-train", "slip_eval": "slip-eval"}
OWN_ERRORS = {
    "slip_data": StageOrderError("o/graph has no finished graph: run `slip-data graph` first"),
    "slip_train": ConfigError("optim.lr: must be greater than 0"),
    "slip_eval": DataError("--split: 'dev' is not one of train, val, test"),
}


class LibraryError(Exception):
    """An error of some library that the package let through: not the user's to fix."""


def app_raising(exc: BaseException) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def go(number: int = 0) -> None:
        raise exc

    @app.command()
    def other() -> None:
        """A second command, so `go` is one of several, as in the packages' apps."""

    return app


def run(package: str, exc: BaseException, argv: list[str], monkeypatch, capsys) -> tuple:
    entry, program = importlib.import_module(f"{package}.entry"), PROGRAMS[package]
    monkeypatch.setattr("sys.argv", [program, *argv])
    with pytest.raises(SystemExit) as exit_:
        entry.run(app_raising(exc), program)
    return exit_.value.code, capsys.readouterr().err


def user_errors(package: str) -> list[tuple[BaseException, str]]:
    """Errors with the one line each gives."""
    own = OWN_ERRORS[package]
    missing = FileNotFoundError(2, "No such file or directory", "data/x.json")
    return [
        (own, str(own)),
        (ValueError("--shots: '1,x' is not a list"), "--shots: '1,x' is not a list"),
        (missing, "go: data/x.json: No such file or directory"),
        (RuntimeError("--engine ray needs Ray"), "--engine ray needs Ray"),
        (ExceptionGroup("workers", [missing]), "go: data/x.json: No such file or directory"),
    ]


@pytest.mark.parametrize("package", sorted(PROGRAMS))
def test_a_user_error_is_one_line_and_status_2(package, monkeypatch, capsys):
    monkeypatch.delenv("SLIP_DEBUG", raising=False)
    for exc, line in user_errors(package):
        code, err = run(package, exc, ["go"], monkeypatch, capsys)
        assert code == 2 and err == f"error: {line}\n", (exc, err)
    code, err = run(package, ValueError(), ["go", "--number", "x"], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1 and "'--number'" in err, err
    assert err.endswith(f"(see `{PROGRAMS[package]} go --help`)\n"), err


@pytest.mark.parametrize("package", sorted(PROGRAMS))
@pytest.mark.parametrize(
    "exc",
    [
        KeyError("nodes"),
        TypeError("f() takes 2 positional arguments but 3 were given"),
        AttributeError("'NoneType' object has no attribute 'shape'"),
        NotImplementedError("resample"),
        LibraryError("a library's own error"),
        ExceptionGroup("workers", [KeyError("nodes")]),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_a_bug_is_a_traceback_and_a_request_to_report_it(package, exc, monkeypatch, capsys):
    code, err = run(package, exc, ["go"], monkeypatch, capsys)
    lines = err.strip().splitlines()
    assert code == 1
    assert lines[0].endswith("Traceback (most recent call last):") and "raise exc" in err
    assert lines[-1] == (
        f"error: this is a bug in {PROGRAMS[package]}, not in your input; please report it on "
        "the project's issue tracker with the command and the traceback above"
    )


def test_a_bug_in_a_real_command_is_reported_not_hidden(tmp_path, monkeypatch, capsys):
    """The bug the catch-all used to turn into `error: 'nodes'`."""
    from slip_data import cli as data_cli
    from slip_train import cli as train_cli

    def broken(*args, **kwargs):
        raise KeyError("nodes")

    config = tmp_path / "run.toml"
    config.write_text("")
    for module, argv in ((data_cli, ["inspect", str(tmp_path)]), (train_cli, ["config", config])):
        monkeypatch.setattr(module, "summarize" if module is data_cli else "load_config", broken)
        monkeypatch.setattr("sys.argv", ["prog", *map(str, argv)])
        with pytest.raises(SystemExit) as exit_:
            module.main()
        err = capsys.readouterr().err
        assert exit_.value.code == 1 and "KeyError: 'nodes'" in err, err
        assert err.strip().splitlines()[-1].startswith("error: this is a bug in slip-")
