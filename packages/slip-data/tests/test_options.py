"""Every number option of `slip-data` is bounded as it is parsed: a value just outside a bound is
a one-line error naming the flag, exit status 2, before any work (the build folder is not made)."""

import inspect
import math

import pytest
import typer

from slip_data.cli import app, main


def number_options(command: typer.main.TyperCommand) -> list:
    return [p for p in command.params if p.type_descriptor.annotation in (int, float)]


def bounds(param) -> dict:
    """The bounds `number()` gave the option; none for an option declared otherwise."""
    check = getattr(param.callback, "__wrapped__", None)
    found = inspect.getclosurevars(check).nonlocals if check else {}
    return {side: found.get(side) for side in ("at_least", "above", "at_most")}


def just_past(bound: float, direction: int, is_float: bool) -> str:
    return repr(math.nextafter(bound, direction * math.inf)) if is_float else str(bound + direction)


def outside(param) -> list[str]:
    """Values just outside each bound of `param`, and NaN for a float."""
    side, is_float = bounds(param), param.type_descriptor.annotation is float
    values = ["nan"] if is_float else []
    if side["at_least"] is not None:
        values.append(just_past(side["at_least"], -1, is_float))
    if side["above"] is not None:
        values.append(repr(float(side["above"])))
    if side["at_most"] is not None:
        values.append(just_past(side["at_most"], 1, is_float))
    return values


COMMANDS = typer.main.get_command(app).commands
CASES = [
    (name, param.opts[0], value)
    for name, command in sorted(COMMANDS.items())
    for param in number_options(command)
    for value in outside(param)
]


def test_every_number_option_is_bounded():
    counts = {name: len(number_options(c)) for name, c in COMMANDS.items()}
    assert counts["build"] > 25 and min(counts[n] for n in ("fetch", "graph", "crawl", "shard")) > 0
    unbounded = [
        f"{name} {param.opts[0]}"
        for name, command in COMMANDS.items()
        for param in number_options(command)
        if not any(value is not None for value in bounds(param).values())
    ]
    assert not unbounded, f"declare these with bounds.number(): {unbounded}"


@pytest.mark.parametrize(("command", "flag", "value"), CASES)
def test_a_value_outside_the_bounds_is_a_one_line_error(
    command, flag, value, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out"
    monkeypatch.setattr("sys.argv", ["slip-data", command, "--out", str(out), flag, value])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.startswith(f"error: {flag}: must be ") and err.count("\n") == 1, err
    assert not out.exists()


def test_values_on_the_bounds_are_taken(tmp_path, monkeypatch, capsys):
    """The bounds are inclusive where the docs say `at least` (the run fails later, on the stage
    order: nothing was fetched)."""
    args = ["--max-redirects", "0", "--workers", "0", "--per-host-rate", "0", "--timeout", "1e-3"]
    monkeypatch.setattr("sys.argv", ["slip-data", "crawl", "--out", str(tmp_path), *args])
    with pytest.raises(SystemExit):
        main()
    assert "run `slip-data graph` first" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["crawl", "--out", "o", "--timeout", "soon"], "Invalid value for '--timeout'"),
        (["crawl", "--out", "o", "--no-such-flag", "1"], "No such option: --no-such-flag"),
        (["crawl"], "Missing option '--out'"),
        (["build", "--out", "{file}"], "is a file"),
    ],
)
def test_usage_errors_are_one_line(args, message, tmp_path, monkeypatch, capsys):
    """click's own errors (a value of the wrong type, an unknown flag) are one line too, not a
    usage panel, and point at the command's --help."""
    file = tmp_path / "file"
    file.write_text("")
    argv = [arg.replace("{file}", str(file)) for arg in args]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["slip-data", *argv])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err and f"see `slip-data {args[0]} --help`" in err


def test_help_exits_zero(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["slip-data", "crawl", "--help"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 0 and "--timeout" in capsys.readouterr().out
