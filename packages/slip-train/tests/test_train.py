"""Training on tiny colour shards on the CPU: the loss goes down, a resumed run equals the
uninterrupted one, the export loads in open_clip, bad states stop with one line."""

import json
from pathlib import Path

import open_clip
import pytest
import torch
from train_shards import write_colour_shards

from slip_train import train as train_module
from slip_train.checkpoint import CheckpointError, export_open_clip, load_checkpoint
from slip_train.config import ConfigError, load_config
from slip_train.factory import build_model
from slip_train.train import TrainingError, TrainResult, train


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_colour_shards(tmp_path_factory.mktemp("colours") / "shards")


def make_config(shards, out, *overrides):
    return load_config(
        None,
        [
            f"data.shards={json.dumps(str(shards))}",
            f"data.cache_dir={json.dumps(str(out / 'cache'))}",
            f"train.out_dir={json.dumps(str(out / 'run'))}",
            "data.num_workers=0",
            "sampler.batch_size=48",
            "sampler.fanouts=[3]",
            "optim.warmup_steps=3",
            "optim.lr=2e-3",
            'train.device="cpu"',
            *overrides,
        ],
    )


def read_log(out):
    return [json.loads(line) for line in (out / "run" / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def finished(shards, tmp_path_factory) -> dict[str, tuple[Path, TrainResult]]:
    """A 30-step run of each mode, trained once: its folder and result, for tests that only read
    a finished run."""
    runs = {}
    for mode in ("slip", "clip"):
        out = tmp_path_factory.mktemp(f"finished-{mode}")
        config = make_config(shards, out, "train.steps=30", f'loss.mode="{mode}"')
        runs[mode] = out, train(config, show_progress=False)
    return runs


@pytest.fixture(scope="module")
def two_steps(shards, tmp_path_factory) -> TrainResult:
    """Two plain steps, trained once: what grad checkpointing and torch.compile must equal."""
    out = tmp_path_factory.mktemp("two-steps")
    return train(make_config(shards, out, "train.steps=2"), show_progress=False)


@pytest.mark.parametrize("mode", ["slip", "clip"])
def test_loss_goes_down(finished, mode):
    out, result = finished[mode]
    log = read_log(out)
    assert [r["step"] for r in log] == list(range(1, 31)) and result.step == 30
    first = sum(r["loss"] for r in log[:5]) / 5
    last = sum(r["loss"] for r in log[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    assert all(r["samples"] == 48 for r in log)
    # the loader's own time per step, measured where the batch is made; waiting is part of a step
    assert all(r["load_s"] > 0 and 0 <= r["data_wait_s"] < r["step_s"] for r in log)
    if mode == "slip":
        assert all(r["edges"] > 0 for r in log) and "structural_loss" in log[0]
    else:
        assert all(r["edges"] == 0 for r in log) and "structural_loss" not in log[0]


def test_resume_continues_exactly(shards, tmp_path):
    # 10 steps of 2 micro-batches cross an epoch (108 train nodes, 12 seeds a batch: 9 batches)
    overrides = ["train.steps=10", "train.checkpoint_every=4", "optim.grad_accum=2"]
    train(make_config(shards, tmp_path, *overrides), show_progress=False)
    uninterrupted = read_log(tmp_path)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == [
        "step-00000004.pt", "step-00000008.pt", "step-00000010.pt",
    ]  # fmt: skip
    for name in ("step-00000008.pt", "step-00000010.pt"):  # as if killed after step 7
        (checkpoints / name).unlink()
    # resumed with worker processes: augmentation does not depend on who decodes
    resumed = make_config(shards, tmp_path, *overrides, "data.num_workers=2")
    train(resumed, resume="latest", show_progress=False)
    log = read_log(tmp_path)
    assert [r["step"] for r in log] == list(range(1, 11))
    for a, b in zip(uninterrupted, log, strict=True):
        assert a["loss"] == b["loss"] and a["epoch"] == b["epoch"], (a, b)
    assert uninterrupted[-1]["epoch"] == 1


def test_export_loads_in_open_clip(shards, finished, tmp_path):
    state = load_checkpoint(finished["slip"][1].checkpoint)
    assert state["step"] == 30 and state["mode"] == "slip" and state["graph_state_dict"]
    folder = tmp_path / "export"
    weights = export_open_clip(state, folder)
    ours = build_model(make_config(shards, tmp_path).model, with_graph=False).model.clip
    ours.load_state_dict(state["clip_state_dict"])
    by_dir = open_clip.create_model(f"local-dir:{folder}")
    open_clip.add_model_config(folder)
    by_name = open_clip.create_model("slip-tiny", pretrained=str(weights))
    images = torch.randn(3, 3, 64, 64)
    tokens = open_clip.get_tokenizer("slip-tiny")(["red product", "blue", "a green thing"])
    expected = ours.eval().encode_image(images), ours.encode_text(tokens)
    model_config = make_config(shards, tmp_path, f"model.pretrained={json.dumps(str(weights))}")
    by_config = build_model(model_config.model, with_graph=True).model.clip
    for model in (by_dir, by_name, by_config):
        model.eval()
        assert torch.allclose(model.encode_image(images), expected[0])
        assert torch.allclose(model.encode_text(tokens), expected[1])


@pytest.mark.parametrize(("log_every", "stopped", "lines"), [(1, 3, [1, 2]), (5, 4, [])])
def test_a_loss_that_is_not_finite_stops_the_run_before_its_next_checkpoint(
    shards, tmp_path, monkeypatch, log_every, stopped, lines
):
    """The loop reads the losses back from the device only for a log line or a checkpoint: step
    3's is caught at the first of them after it, and no checkpoint is written after it."""
    real = train_module.training_loss
    calls = []

    def failing(*args, **kwargs):
        losses = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            losses["loss"] = losses["loss"] * float("nan")
        return losses

    monkeypatch.setattr(train_module, "training_loss", failing)
    overrides = ["train.steps=6", "train.checkpoint_every=2", f"train.log_every={log_every}"]
    with pytest.raises(TrainingError) as error:
        train(make_config(shards, tmp_path, *overrides), show_progress=False)
    message = str(error.value)
    assert message.startswith(f"step 3: loss is nan, not finite; stopped at step {stopped},")
    assert message.endswith("step-00000002.pt") and "\n" not in message
    checkpoints = tmp_path / "run" / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == ["step-00000002.pt"]
    assert load_checkpoint(checkpoints / "step-00000002.pt")["step"] == 2
    assert [r["step"] for r in read_log(tmp_path)] == lines


def test_a_line_every_few_steps_is_the_logged_steps_with_the_mean_timings(shards, tmp_path):
    every = train(make_config(shards, tmp_path / "every", "train.steps=5"), show_progress=False)
    train(make_config(shards, tmp_path, "train.steps=5", "train.log_every=2"), show_progress=False)
    log, each = read_log(tmp_path), read_log(tmp_path / "every")
    assert [r["step"] for r in log] == [2, 4, 5] and every.step == 5
    assert all(r.keys() == each[0].keys() for r in log)
    for line in log:  # the same training, read back less often
        same = each[line["step"] - 1]
        for key in ("loss", "clip_loss", "structural_loss", "grad_norm", "logit_scale", "lr"):
            assert line[key] == same[key], key
        assert line["samples_per_s"] == pytest.approx(line["samples"] / line["step_s"])
        assert 0 <= line["data_wait_s"] < line["step_s"] and line["logit_scale"] <= 100


def test_grad_checkpointing_and_tensorboard_and_no_silent_overwrite(shards, two_steps, tmp_path):
    overrides = ["train.steps=2", "train.grad_checkpointing=true", "train.tensorboard=true"]
    checkpointed = train(make_config(shards, tmp_path, *overrides), show_progress=False)
    assert checkpointed.last_loss == pytest.approx(two_steps.last_loss, rel=1e-5)
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    with pytest.raises(ConfigError, match="already holds checkpoints; continue with --resume"):
        train(make_config(shards, tmp_path, "train.steps=2"), show_progress=False)


def test_nodes_without_an_image_are_left_out(tmp_path):
    from slip_train.data import load_train_data

    folder = write_colour_shards(tmp_path / "shards", replace={1: None})
    data = load_train_data(folder, "train", tmp_path / "cache")
    assert 1 not in data.split_nodes.tolist() and 2 in data.split_nodes.tolist()


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    truncated = tmp_path / "truncated.pt"
    torch.save({"format": "slip-checkpoint"}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:20])
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    newer = tmp_path / "newer.pt"
    torch.save({"format": "slip-checkpoint", "format_version": 99}, newer)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format": "slip-checkpoint", "obj": CheckpointError("x")}, unsafe)
    cases = {
        tmp_path / "missing.pt": "no such checkpoint",
        truncated: "not a readable checkpoint",
        foreign: "not a slip-train checkpoint",
        newer: "checkpoint format version 99; this slip-train reads 1",
        unsafe: "not a readable checkpoint",  # weights_only refuses arbitrary objects
    }
    for path, message in cases.items():
        with pytest.raises(CheckpointError) as error:
            load_checkpoint(path)
        assert message in str(error.value) and "\n" not in str(error.value), path


def test_bf16_on_cpu_a_missing_split_and_unknown_models_are_one_line_errors(shards, tmp_path):
    with pytest.raises(ConfigError, match="bf16 autocast needs CUDA"):
        train(make_config(shards, tmp_path, 'train.precision="bf16"'), show_progress=False)
    with pytest.raises(
        ConfigError, match=r"sampler\.device: cuda needs training on CUDA; this run"
    ):
        train(make_config(shards, tmp_path, 'sampler.device="cuda"'), show_progress=False)
    with pytest.raises(ValueError, match="the 'val' split has no nodes"):
        train(make_config(shards, tmp_path, 'data.split="val"'), show_progress=False)
    with pytest.raises(ValueError, match=r"model\.name: open_clip knows no model 'ViT-Q-99'"):
        build_model(make_config(shards, tmp_path, 'model.name="ViT-Q-99"').model, True)
    missing = make_config(shards, tmp_path, f'model.pretrained="{tmp_path / "none.bin"}"')
    with pytest.raises(ValueError, match=r"model\.pretrained: .*not a known tag or valid"):
        build_model(missing.model, True)


def slip_train(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """`slip-train ARGS` through its entry point, in this process (torch is imported once)."""
    from slip_train.cli import main

    monkeypatch.setattr("sys.argv", ["slip-train", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    said = capsys.readouterr()
    return exit_.value.code, said.out, said.err


def test_cli_runs_resumes_and_exports(shards, tmp_path, monkeypatch, capsys):
    config = tmp_path / "run.toml"
    config.write_text(
        f'[data]\nshards = "{shards}"\ncache_dir = "{tmp_path / "cache"}"\nnum_workers = 0\n'
        f'[sampler]\nbatch_size = 32\n[train]\nsteps = 2\ndevice = "cpu"\n'
        f'out_dir = "{tmp_path / "run"}"\n'
    )
    code, said, err = slip_train(["run", str(config), "--quiet"], monkeypatch, capsys)
    assert code == 0 and "step 2: loss" in said, err
    more = ["run", str(config), "--quiet", "--resume", "latest", "--set", "train.steps=3"]
    code, said, err = slip_train(more, monkeypatch, capsys)
    assert code == 0 and "step 3: loss" in said, err
    checkpoint = tmp_path / "run" / "checkpoints" / "step-00000003.pt"
    export = ["export", str(checkpoint), "--out", str(tmp_path / "export")]
    code, _, err = slip_train(export, monkeypatch, capsys)
    assert code == 0 and (tmp_path / "export" / "open_clip_config.json").is_file(), err
    code, said, err = slip_train(more, monkeypatch, capsys)
    assert code == 0 and "step 3: train.steps already reached" in said, err
    bad = ["run", str(config), "--quiet", "--set", f'data.shards="{tmp_path / "none"}"']
    code, _, err = slip_train(bad, monkeypatch, capsys)
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("error: no manifest.json in")


def test_schedule_warms_up_then_decays_to_zero():
    from slip_train.train import warmup_cosine

    factor = warmup_cosine(warmup=4, total=12)
    assert [factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(8) == pytest.approx(0.5) and factor(12) == pytest.approx(0.0)
    assert all(factor(s) >= factor(s + 1) for s in range(4, 12))


def test_no_weight_decay_on_norms_biases_gates_and_the_logit_scale(shards, tmp_path):
    from slip_train.factory import param_groups

    model = build_model(make_config(shards, tmp_path).model, with_graph=True).model
    groups = param_groups(model, weight_decay=0.2, lr=1e-3, graph_head_lr_scale=10.0)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = [p for g in groups if g["weight_decay"] == 0.0 for p in g["params"]]
    decay = [p for g in groups if g["weight_decay"] == 0.2 for p in g["params"]]
    assert len(no_decay) + len(decay) == len(names)  # every parameter, once
    undecayed = {names[id(p)] for p in no_decay}
    assert {"clip.logit_scale", "image_graph.gates", "text_graph.norms.0.weight"} <= undecayed
    assert all(p.ndim <= 1 for p in no_decay) and all(p.ndim >= 2 for p in decay)
    assert "clip.visual.conv1.weight" in {names[id(p)] for p in decay}
    # by shape, whatever the name: a matrix named like a bias or a norm is decayed
    model.text_graph.register_parameter("ln_bias_table", torch.nn.Parameter(torch.zeros(3, 4)))
    regrouped = param_groups(model, weight_decay=0.2, lr=1e-3)
    table = model.text_graph.ln_bias_table
    assert any(p is table for g in regrouped if g["weight_decay"] == 0.2 for p in g["params"])
    by_lr = {round(g["lr"], 9): {names[id(p)].split(".")[0] for p in g["params"]} for g in groups}
    assert by_lr == {1e-3: {"clip"}, 1e-2: {"image_graph", "text_graph"}}
    assert groups[0]["lr"] == 1e-3  # group 0 is the encoders': the lr the log reports


def test_heads_only_gradient_keeps_the_structural_loss_out_of_the_encoders(shards, tmp_path):
    from slip_train.graph_head import neighbour_edges
    from slip_train.loss import structural_loss

    torch.manual_seed(0)
    context = open_clip.get_model_config("slip-tiny")["text_cfg"]["context_length"]
    images, tokens = torch.randn(4, 3, 64, 64), torch.randint(1, 100, (4, context))
    edges = neighbour_edges(torch.tensor([[0, 1], [1, 2]]))
    grads = {}
    for gradient in ("encoders", "heads"):
        model = build_model(
            make_config(shards, tmp_path).model, with_graph=True, structural_gradient=gradient
        ).model
        with torch.no_grad():  # open the gates so the heads' own parameters get a gradient
            model.image_graph.gates.fill_(0.5)
            model.text_graph.gates.fill_(0.5)
        out = model(images, tokens, edges)
        structural_loss(out["image_graph"], out["text_graph"], edges, temperature=0.07).backward()
        grads[gradient] = {
            part: any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
            for part, module in (("encoders", model.clip), ("heads", model.graph_heads()))
        }
    assert grads["encoders"] == {"encoders": True, "heads": True}
    assert grads["heads"] == {"encoders": False, "heads": True}


def test_torch_compile_trains_as_eager(shards, two_steps, tmp_path):
    compiled = train(
        make_config(shards, tmp_path, "train.steps=2", "train.compile=true"), show_progress=False
    )
    assert compiled.last_loss == pytest.approx(two_steps.last_loss, rel=1e-4)


def test_neighbours_out_of_clips_negatives_and_anchor_weights_reach_the_loss(shards, tmp_path):
    """`loss.neighbours_as_negatives = false` changes CLIP's loss on the same first batch (fewer
    negatives, a lower loss), and `loss.anchor_weights = "inverse_appearances"` changes it again,
    and nothing else: the edges and the structural loss are the same."""
    runs = {
        "counted": ["loss.neighbours_as_negatives=true"],
        "masked": ["loss.neighbours_as_negatives=false"],
        "weighted": [
            "loss.neighbours_as_negatives=false",
            'loss.anchor_weights="inverse_appearances"',
        ],
    }
    first = {}
    for name, overrides in runs.items():
        out = tmp_path / name
        train(make_config(shards, out, "train.steps=1", *overrides), show_progress=False)
        first[name] = read_log(out)[0]
    assert first["masked"]["edges"] == first["counted"]["edges"] == first["weighted"]["edges"] > 0
    assert first["masked"]["clip_loss"] < first["counted"]["clip_loss"]
    assert first["weighted"]["clip_loss"] != pytest.approx(first["masked"]["clip_loss"], rel=1e-4)
    for name in ("masked", "weighted"):
        assert first[name]["structural_loss"] == pytest.approx(first["counted"]["structural_loss"])


def test_a_gated_run_trains_on_the_kept_edges_only(shards, tmp_path):
    """At the quantile 1 no edge is kept and the first batch has none; at 0 almost every edge is
    kept; edge_gate.json says what was (sampler.edge_gate, edge_gate.py); CLIP's mode ignores
    the gate."""
    runs = {}
    for name, overrides in {
        "none": ['sampler.edge_gate="similarity"', "sampler.edge_gate_quantile=1.0"],
        "most": ['sampler.edge_gate="similarity"', "sampler.edge_gate_quantile=0.0"],
        "clip": ['sampler.edge_gate="similarity"', 'loss.mode="clip"'],
    }.items():
        out = tmp_path / name
        train(make_config(shards, out, "train.steps=1", *overrides), show_progress=False)
        gate = out / "run" / "edge_gate.json"
        runs[name] = read_log(out)[0], json.loads(gate.read_text()) if gate.is_file() else None
    (none_log, none_gate), (most_log, most_gate) = runs["none"], runs["most"]
    assert none_gate["edges_kept"] == 0 < none_gate["edges_before"] == most_gate["edges_before"]
    assert none_log["edges"] == 0 < most_log["edges"]
    assert most_gate["edges_kept"] > 0.9 * most_gate["edges_before"]
    assert most_gate["images_unusable"] == 0
    assert runs["clip"][1] is None


def test_judging_the_whole_graph_keeps_it_or_falls_back_to_clips_batches(
    shards, finished, tmp_path, monkeypatch
):
    """`sampler.edge_gate = "graph"` from the colour model trained by `finished` (its co-purchases
    mostly join one colour): at the quantile 0.95 enough edges are alike, and the run trains on
    the whole graph, the first batch's edges those of an ungated run; at 0.5 it would need every
    edge above the median random pair, so it trains on CLIP's uniform batches, without edges.
    From scratch (the default's gate, no `model.pretrained`) it cannot judge, and keeps the whole
    graph, saying so."""
    weights = export_open_clip(load_checkpoint(finished["clip"][1].checkpoint), tmp_path / "w")
    pretrained = f"model.pretrained={json.dumps(str(weights))}"
    runs = {}
    for name, overrides in {
        "ungated": [pretrained, 'sampler.edge_gate="none"'],
        "judged": [pretrained, 'sampler.edge_gate="graph"'],
        "fallback": [pretrained, 'sampler.edge_gate="graph"', "sampler.edge_gate_quantile=0.5"],
    }.items():
        out = tmp_path / name
        train(make_config(shards, out, "train.steps=1", *overrides), show_progress=False)
        gate = out / "run" / "edge_gate.json"
        runs[name] = read_log(out)[0], json.loads(gate.read_text()) if gate.is_file() else None
    monkeypatch.setattr(train_module, "JUDGED_NODES", 60)  # judged on a sample of the nodes
    sampled = tmp_path / "sampled"
    config = make_config(shards, sampled, "train.steps=1", pretrained, 'sampler.edge_gate="graph"')
    train(config, show_progress=False)
    on_sample = json.loads((sampled / "run" / "edge_gate.json").read_text())
    assert on_sample["products_embedded"] == 60 and on_sample["batches"] == "slip"
    assert 0 < on_sample["edges_before"] < runs["judged"][1]["edges_before"]
    assert read_log(sampled)[0]["edges"] == runs["ungated"][0]["edges"]  # trained on the whole
    judged, fallback = runs["judged"][1], runs["fallback"][1]
    assert judged["batches"] == "slip" and judged["edges_kept"] >= 0.1 * judged["edges_before"]
    assert runs["judged"][0]["edges"] == runs["ungated"][0]["edges"] > 0
    assert fallback["batches"] == "clip" and fallback["edges_kept"] < fallback["edges_before"]
    assert runs["fallback"][0]["edges"] == 0
    scratch = tmp_path / "scratch"  # the default, from scratch: the whole graph, unjudged
    train(make_config(shards, scratch, "train.steps=1"), show_progress=False)
    assert read_log(scratch)[0]["edges"] == runs["ungated"][0]["edges"]
    unjudged = json.loads((scratch / "run" / "edge_gate.json").read_text())
    assert unjudged == {"edge_gate": "graph", "judged": False, "batches": "slip"}
