"""The paper's protocol through the commands: a CLIP exported by `slip-train export` is the
`model.pretrained` file both modes fine-tune from, as a user's `openai` weights would be."""

import json

import torch
from commands import SLIP_TRAIN, run


def test_both_modes_fine_tune_from_an_exported_clip(demo_build, demo_runs, demo_export, tmp_path):
    weights = demo_export / "open_clip_pytorch_model.bin"
    start = torch.load(weights, weights_only=True)
    for mode in ("slip", "clip"):
        out = tmp_path / f"fine-tuned-{mode}"
        tuned = run(
            [*SLIP_TRAIN, "run", "configs/demo-finetune-cpu.toml", "--quiet",
             "--set", f'data.shards="{demo_build}"', "--set", f'model.pretrained="{weights}"',
             "--set", f'data.cache_dir="{demo_runs.cache}"', "--set", f'train.out_dir="{out}"',
             "--set", "train.steps=1", "--set", "train.seed=1", "--set", f'loss.mode="{mode}"',
             "--set", "sampler.batch_size=32"]
        )  # fmt: skip
        assert tuned.returncode == 0, tuned.stderr
        state = torch.load(out / "checkpoints" / "step-00000001.pt", weights_only=True)
        assert state["mode"] == mode and state["config"]["model"]["pretrained"] == str(weights)
        assert state["clip_state_dict"].keys() == start.keys()
        (logged,) = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        assert mode == "clip" or logged["edges"] > 0
        # AdamW's first step moves a weight by at most lr·(1 + weight_decay·|w|), lr at most the
        # peak: a run that started elsewhere (another seed's init, or the file's before its
        # steps at 1e-3) is off by far more.
        optim = state["config"]["optim"]
        bound = 1.01 * optim["lr"] * (1 + optim["weight_decay"])
        for key, tensor in start.items():
            moved = (state["clip_state_dict"][key] - tensor).abs().max().item()
            assert moved <= bound * max(1.0, tensor.abs().max().item()), (mode, key, moved)
