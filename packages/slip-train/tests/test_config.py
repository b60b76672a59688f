import pytest

from slip_train.config import ConfigError, load_config, to_dict


def write(tmp_path, text):
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_defaults_file_and_overrides_in_that_order(tmp_path):
    assert load_config().optim.lr == 5e-4
    path = write(tmp_path, '[optim]\nlr = 1e-3\nwarmup_steps = 7\n[loss]\nmode = "clip"\n')
    config = load_config(path, ["optim.lr=3e-4", "sampler.fanouts=[10, 10]", "train.device=cpu"])
    assert config.optim.lr == 3e-4 and config.optim.warmup_steps == 7
    assert config.loss.mode == "clip"
    assert config.sampler.fanouts == [10, 10]
    assert config.train.device == "cpu"  # a bare word is taken as a string
    assert to_dict(config)["optim"]["lr"] == 3e-4


def test_integers_are_accepted_where_floats_belong(tmp_path):
    config = load_config(write(tmp_path, "[loss]\nstructural_weight = 1\n"))
    assert config.loss.structural_weight == 1.0
    assert isinstance(config.loss.structural_weight, float)


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("[optim]\nlrr = 1\n", [], "unknown key optim.lrr; valid keys here: betas, eps"),
        ("[optimizer]\nlr = 1\n", [], "unknown key optimizer; valid keys here: data"),
        ('[optim]\nlr = "fast"\n', [], "optim.lr: expected float, got 'fast'"),
        ("[train]\nsteps = 1.5\n", [], "train.steps: expected an integer, got 1.5"),
        ("[train]\ncompile = 1\n", [], "train.compile: expected true or false, got 1"),
        ('[sampler]\nfanouts = [10, "x"]\n', [], "sampler.fanouts[1]: expected an integer"),
        ("", ["loss.mode=contrastive"], "loss.mode: 'contrastive' is not one of slip, clip"),
        ("", ["optim.lr=0"], "optim.lr: must be greater than 0"),
        ("", ["loss.positives=all"], "loss.positives: 'all' is not one of equal, soft"),
        ("", ["loss.neighbour_mass=1.5"], "loss.neighbour_mass: expected a number in [0, 1]"),
        ("", ["loss.structural_gradient=none"], "loss.structural_gradient: 'none' is not one of"),
        ("", ["optim.graph_head_lr_scale=0"], "optim.graph_head_lr_scale: must be greater than 0"),
        ("", ["sampler.seeds=uniform"], "sampler.seeds: 'uniform' is not one of epoch, balanced"),
        ("", ["sampler.fanouts=[]"], "sampler.fanouts: expected at least 1 item, got 0"),
        ("", ["sampler.fanouts=[2, 0]"], "sampler.fanouts[1]: must be greater than 0"),
        ("", ["optim.betas=[0.9]"], "optim.betas: expected 2 items, got 1"),
        ("", ["optim.betas=[0.9, 1]"], "optim.betas[1]: expected a number in [0, 1)"),
        ("", ["model.gat_dropout=1.0"], "model.gat_dropout: expected a number in [0, 1)"),
        ("", ["optim.weight_decay=-0.1"], "optim.weight_decay: must be at least 0"),
        ("", ["optim.lr=nan"], "optim.lr: must be a finite number, got nan"),
        ("", ["loss.mode=3"], "loss.mode: 3 is not one of slip, clip"),
        ("", ["optim"], "override 'optim' is not KEY.PATH=VALUE"),
        ("optim = 3\n", [], "optim: expected a table, got 3"),
        ("[optim\n", [], "not valid TOML"),
    ],
)
def test_bad_configs_are_one_line_errors_naming_the_key(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), overrides)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
