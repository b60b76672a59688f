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
        "error: unknown key optim.lrr; valid keys here: betas, eps, grad_accum, grad_cache_rows, "
        "grad_clip, graph_head_lr_scale, lr, warmup_steps, weight_decay"
    ]


def test_set_takes_a_toml_value_or_a_plain_word(tmp_path):
    import json

    path = tmp_path / "run.toml"
    path.write_text("")
    overrides = ["model.name=ViT-B-32", "model.pretrained=/weights/v1.bin", "optim.lr=3e-4",
                 'train.out_dir="out/a b"', "sampler.fanouts=[2, 2]"]  # fmt: skip
    args = ["config", str(path), *(arg for value in overrides for arg in ("--set", value))]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.output)
    assert resolved["model"]["name"] == "ViT-B-32"
    assert resolved["model"]["pretrained"] == "/weights/v1.bin"
    assert resolved["optim"]["lr"] == 3e-4 and resolved["train"]["out_dir"] == "out/a b"
    assert resolved["sampler"]["fanouts"] == [2, 2]


def test_set_of_what_is_neither_toml_nor_a_plain_word_is_one_line(tmp_path, monkeypatch, capsys):
    import pytest

    from slip_train.cli import main

    path = tmp_path / "run.toml"
    path.write_text("")
    cases = {
        'train.out_dir="unterminated': "Unterminated string",
        "sampler.fanouts=[2, 2": "Unclosed array",
        "model.name=two words": "",
        "model.name=": "",
    }
    for value, reason in cases.items():
        monkeypatch.setattr("sys.argv", ["slip-train", "config", str(path), "--set", value])
        with pytest.raises(SystemExit) as exit_:
            main()
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1, err
        assert err.startswith(f"error: --set {value}: not a TOML value ({reason}"), err


def test_slip_train_has_no_number_option_to_bound():
    """slip-eval and slip-data bound theirs as they are parsed (bounds.py); a number option
    added here needs the same, and the config's numbers are checked in config.py."""
    import typer

    commands = typer.main.get_command(app).commands.values()
    annotations = {param.type_descriptor.annotation for c in commands for param in c.params}
    assert not annotations & {int, float}
