import inspect
import math

import pytest
import typer
from typer.testing import CliRunner

from slip_eval.cli import app, main


def test_help_lists_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "version" in result.output


def test_version_prints_package_version():
    from slip_eval import __version__

    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output.strip() == __version__


def number_options() -> list[tuple[str, object]]:
    commands = typer.main.get_command(app).commands
    return [
        (name, param)
        for name, command in sorted(commands.items())
        for param in command.params
        if param.type_descriptor.annotation in (int, float)
    ]


def just_outside(param) -> list[str]:
    """A value just outside each bound `bounds.number()` gave the option (none: unbounded)."""
    check = getattr(param.callback, "__wrapped__", None)
    bounds = inspect.getclosurevars(check).nonlocals if check else {}
    is_float = param.type_descriptor.annotation is float

    def past(bound: float, direction: int) -> str:
        return (
            repr(math.nextafter(bound, direction * math.inf))
            if is_float
            else str(bound + direction)
        )

    values = []
    if bounds.get("at_least") is not None:
        values.append(past(bounds["at_least"], -1))
    if bounds.get("above") is not None:
        values.append(repr(float(bounds["above"])))
    if bounds.get("at_most") is not None:
        values.append(past(bounds["at_most"], 1))
    return values


def test_every_number_option_is_bounded_and_checked_as_it_is_parsed(monkeypatch, capsys):
    options = number_options()
    assert {param.opts[0] for _, param in options} == {
        "--chunk-size",
        "--seeds",
        "--queries",
        "--seed",
        "--per-positive",
        "--holdout",
        "--max-epochs",
        "--patience",
    }
    for name, param in options:
        flag, values = param.opts[0], just_outside(param)
        assert values, f"slip-eval {name} {flag} is unbounded: declare it with bounds.number()"
        for value in values:
            monkeypatch.setattr("sys.argv", ["slip-eval", name, flag, value])
            with pytest.raises(SystemExit) as exit_:
                main()
            err = capsys.readouterr().err
            assert exit_.value.code == 2
            assert err.startswith(f"error: {flag}: must be ") and err.count("\n") == 1, err


def test_comma_separated_options_are_parsed_or_refused_in_one_line():
    from slip_eval import options

    assert options.names(" sage, gcn,sage ", flag="--models", allowed=("gcn", "sage")) == [
        "sage",
        "gcn",
    ]
    assert options.names("", flag="--predictors", allowed=("sage",), required=False) == []
    assert options.shots("") == [] and options.shots("4,0,4") == [0, 4]
    refused = [
        (lambda: options.names("gcn,gin", flag="--models", allowed=("gcn",)), "--models"),
        (lambda: options.names("", flag="--split", allowed=("test",)), "--split"),
        (lambda: options.shots("0,2", at_least=1), "--shots"),
        (lambda: options.shots("two"), "--shots"),
    ]
    for parse, flag in refused:
        with pytest.raises(ValueError, match=f"^{flag}: ") as error:
            parse()
        assert "\n" not in str(error.value)
