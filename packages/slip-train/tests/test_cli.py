from typer.testing import CliRunner

from slip_train.cli import app


def test_help_lists_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "version" in result.output


def test_version_prints_package_version():
    from slip_train import __version__

    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output.strip() == __version__


def test_config_command_prints_the_resolved_config(tmp_path):
    import json

    path = tmp_path / "run.toml"
    path.write_text("[optim]\nlr = 1e-3\n")
    result = CliRunner().invoke(app, ["config", str(path), "--set", "train.steps=7"])
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.output)
    assert resolved["optim"]["lr"] == 1e-3 and resolved["train"]["steps"] == 7


def test_bad_config_is_one_line_on_stderr(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "run.toml"
    path.write_text("[optim]\nlrr = 1\n")
    result = subprocess.run(
        [sys.executable, "-c", "from slip_train.cli import main; main()", "config", str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown key optim.lrr; valid keys here: betas, eps, grad_accum, grad_clip, lr, "
        "warmup_steps, weight_decay"
    ]
