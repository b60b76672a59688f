"""The graph heads cross the checkpoint contract whole: heads slip-train built, saved in a
slip-train checkpoint and rebuilt by slip-eval (docs/checkpoint-format.md) refine embeddings
exactly as slip-train's forward does."""

import open_clip
import pytest
import torch
from torch import nn

from slip_eval.graph import refine
from slip_eval.models import load_model
from slip_train.checkpoint import save_checkpoint
from slip_train.graph_head import neighbour_edges
from slip_train.model import GraphHead, SlipModel

MODEL_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 16, "head_width": 8, "patch_size": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}


@pytest.mark.parametrize("fusion", ["gated_residual", "replace"])
def test_slip_eval_refines_as_slip_train_does(tmp_path, fusion):
    torch.manual_seed(0)
    spec = {"dim": 16, "layers": 2, "heads": 4, "fusion": fusion}
    heads = [GraphHead(**spec, dropout=0.1) for _ in range(2)]
    for param in (param for head in heads for param in head.parameters()):
        nn.init.normal_(param)  # gates away from 0, where a fresh head returns its input
    model = SlipModel(open_clip.CLIP(**MODEL_CFG), *heads).eval()
    saved = save_checkpoint(
        {
            "step": 1, "mode": "slip", "model_name": "tiny", "model_cfg": MODEL_CFG,
            "preprocess_cfg": {"size": 16, "mean": [0.5] * 3, "std": [0.5] * 3},
            "clip_state_dict": model.clip.state_dict(), "graph_head": spec,
            "graph_state_dict": {"image_graph": heads[0].state_dict(),
                                 "text_graph": heads[1].state_dict()},
        },
        tmp_path, keep=1,
    )  # fmt: skip
    images, tokens = torch.randn(12, 3, 16, 16), torch.randint(1, 49000, (12, 8))
    pairs = torch.combinations(torch.arange(12))  # src < dst, each pair once, as shards store it
    edge_index = pairs[torch.randperm(len(pairs))[:20]].T
    with torch.no_grad():
        trained = model(images, tokens, neighbour_edges(edge_index))  # as the loader hands it
        loaded = load_model(str(saved), None, None)
        raw = {"image": loaded.clip.encode_image(images), "text": loaded.clip.encode_text(tokens)}
    for name, head in zip(("image", "text"), loaded.graph_heads, strict=True):
        refined = refine(head, raw[name], edge_index)
        torch.testing.assert_close(refined, trained[f"{name}_graph"])
        assert not torch.allclose(refined, trained[name], atol=1e-3)  # the head did refine
