"""Node classification over the co-purchase graph with GNNs on frozen embeddings, as MAGB
(arXiv 2410.09132) measures a multimodal attributed graph: GCN, GraphSAGE, GAT and an MLP
trained on the train split's labels over the whole graph (transductive), early-stopped on val
accuracy, scored on test by accuracy and macro-F1.

The node features are the embeddings `slip-eval embed` writes, read back by `to_pyg`: the same
nodes, order, normalisation and graph as a user of those files gets. The GNNs see every edge
between two products with an image, whatever their splits; the MLP sees none, so the gap between
them is what the graph adds to the embeddings.
"""

import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import Tensor, nn

from slip_eval.data import SPLITS, DataError, open_split
from slip_eval.embeddings import to_pyg, write_embeddings
from slip_eval.metrics import few_shot_indices, mean_and_std
from slip_eval.models import LoadedModel
from slip_eval.tasks import graph_ready, result_header

MODELS = ("gcn", "sage", "gat", "mlp")
# the layers that aggregate with one sparse matrix product over the adjacency rather than
# gathering and scattering a message per edge: the same outputs, faster (docs/benchmarks.md)
SPARSE_KINDS = ("gcn", "sage")
FEATURES = ("image", "text", "concat")
# PyG's example GCN and MAGB's defaults (docs/eval.md says which comes from where)
LAYERS, HIDDEN, DROPOUT, GAT_HEADS = 2, 256, 0.5, 4
LR, WEIGHT_DECAY, MAX_EPOCHS, PATIENCE = 0.01, 5e-4, 200, 20


def macro_f1(predicted: Tensor, target: Tensor) -> float:
    """The unweighted mean of each class's F1 = 2TP / (2TP + FP + FN), over the classes that
    occur in `target` or `predicted` (sklearn's `f1_score(average="macro")`): a rare class counts
    as much as a common one, which accuracy hides on skewed product categories."""
    predicted, target = predicted.long().cpu(), target.long().cpu()
    if predicted.shape != target.shape or target.ndim != 1 or target.numel() == 0:
        raise ValueError(
            f"predicted {tuple(predicted.shape)} and target {tuple(target.shape)}: "
            "expected two (n,) with n > 0"
        )
    size = int(max(predicted.max(), target.max())) + 1
    hit = predicted == target
    tp = torch.bincount(target[hit], minlength=size).double()
    fp = torch.bincount(predicted[~hit], minlength=size).double()
    fn = torch.bincount(target[~hit], minlength=size).double()
    present = (tp + fp + fn) > 0
    return (2 * tp[present] / (2 * tp + fp + fn)[present]).mean().item()


class NodeClassifier(nn.Module):
    """LAYERS layers of `kind` (ReLU and dropout between them, dropout on the input too): graph
    convolutions over `edge_index`, or, for `mlp`, linear layers that never read it."""

    def __init__(self, kind: str, in_dim: int, num_classes: int) -> None:
        super().__init__()
        if kind not in MODELS:
            raise ValueError(f"unknown model {kind!r}: one of {', '.join(MODELS)}")
        from torch_geometric.nn import GATConv, GCNConv, SAGEConv  # graph_head.py silenced PyG

        self.kind = kind
        widths = [in_dim] + [HIDDEN] * (LAYERS - 1) + [num_classes]
        pairs = list(pairwise(widths))
        if kind == "gcn":  # the graph never changes during a fit: its normalisation is cached
            layers = [GCNConv(a, b, cached=True) for a, b in pairs]
        elif kind == "sage":
            layers = [SAGEConv(a, b) for a, b in pairs]
        elif kind == "gat":  # hidden layers: GAT_HEADS heads concatenated to HIDDEN wide
            layers = [GATConv(a, b // GAT_HEADS, heads=GAT_HEADS) for a, b in pairs[:-1]]
            layers.append(GATConv(*pairs[-1], heads=1))
        else:
            layers = [nn.Linear(a, b) for a, b in pairs]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor, graph: Tensor) -> Tensor:
        """`graph`: an `edge_index`, or for SPARSE_KINDS also the sparse adjacency `adjacency`
        returns."""
        for i, layer in enumerate(self.layers):
            x = F.dropout(x, DROPOUT, self.training)
            x = layer(x) if self.kind == "mlp" else layer(x, graph)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


@dataclass(frozen=True)
class Run:
    """One fit's test scores at its best val epoch, that epoch (1-based), and the epochs run."""

    acc: float
    macro_f1: float
    best_epoch: int
    epochs: int


def adjacency(edge_index: Tensor, num_nodes: int) -> Tensor:
    """The graph as a sparse CSR matrix, which PyG's layers take in place of `edge_index` as the
    transposed adjacency; the co-purchase graph holds both directions, so it is its own transpose.
    GCN adds its self-loops to it as to an `edge_index`: the shards hold none (docs/
    shard-format.md), so neither form has one to double."""
    from torch_geometric.utils import to_torch_csr_tensor

    with warnings.catch_warnings():  # torch calls its sparse CSR support beta
        warnings.simplefilter("ignore", UserWarning)
        return to_torch_csr_tensor(edge_index, size=(num_nodes, num_nodes))


def train_epoch(
    model: NodeClassifier, optimizer: torch.optim.Optimizer, data, graph: Tensor, train: Tensor
):
    """One full-batch step of cross-entropy on the labelled train nodes `train`."""
    model.train()
    optimizer.zero_grad()
    loss = F.cross_entropy(model(data.x, graph)[train], data.y[train])
    loss.backward()
    optimizer.step()


@torch.no_grad()
def predict(model: NodeClassifier, data, graph: Tensor) -> Tensor:
    """Every node's predicted class, dropout off."""
    model.eval()
    return model(data.x, graph).argmax(1)


def fit(
    kind: str,
    data,
    train: Tensor,
    *,
    num_classes: int,
    seed: int,
    max_epochs: int = MAX_EPOCHS,
    patience: int = PATIENCE,
) -> Run:
    """Train a fresh `kind` model from `seed` on the nodes `train` of `data` (a PyG `Data` with
    `x`, `edge_index`, `y`, `val_mask` and `test_mask`, all on one device) until val accuracy has
    not risen for `patience` epochs or `max_epochs` have run; score the test nodes with the
    predictions of the best val epoch (the earliest of equals), never with a later one."""
    with torch.random.fork_rng(devices=[data.x.device] if data.x.is_cuda else []):
        torch.manual_seed(seed)
        model = NodeClassifier(kind, data.x.shape[1], num_classes).to(data.x.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
        graph = data.edge_index
        if kind in SPARSE_KINDS:
            graph = adjacency(graph, data.num_nodes)
        best_acc, best_epoch, best = -1.0, 0, None
        for epoch in range(1, max_epochs + 1):
            train_epoch(model, optimizer, data, graph, train)
            predicted = predict(model, data, graph)
            acc = (predicted[data.val_mask] == data.y[data.val_mask]).double().mean().item()
            if acc > best_acc:
                best_acc, best_epoch, best = acc, epoch, predicted
            elif epoch - best_epoch >= patience:
                break
    test, truth = best[data.test_mask], data.y[data.test_mask]
    return Run(
        acc=(test == truth).double().mean().item(),
        macro_f1=macro_f1(test, truth),
        best_epoch=best_epoch,
        epochs=epoch,
    )


def train_sets(
    data, *, k: int | None, seeds: int, num_classes: int
) -> tuple[list[Tensor], dict[int, int]]:
    """Each seed's labelled nodes: every train node (k None), or k per class drawn from the
    train nodes by `few_shot_indices` with the seed, as classify's few-shot; and the classes with
    fewer than k train nodes, all of which were taken."""
    train = data.train_mask.nonzero().flatten().cpu()
    if k is None:
        return [train.to(data.x.device)] * seeds, {}
    sets, short = [], {}
    for seed in range(seeds):
        sample = few_shot_indices(data.y[train].cpu(), k, seed, num_classes=num_classes)
        sets.append(train[sample.indices].to(data.x.device))
        short = sample.short_classes  # the same for every seed: it depends on counts only
    return sets, short


def summarise(runs: Sequence[Run]) -> dict[str, float]:
    """`acc` and `macro_f1` over the seeds' runs: `_mean` and `_std` (sample std, nan for one)."""
    return mean_and_std([{"acc": run.acc, "macro_f1": run.macro_f1} for run in runs])


def classify_nodes(
    data,
    *,
    num_classes: int,
    models: Sequence[str] = MODELS,
    shots: Sequence[int] = (),
    seeds: int = 3,
    max_epochs: int = MAX_EPOCHS,
    patience: int = PATIENCE,
    quiet: bool = True,
) -> tuple[dict[str, float], dict[str, dict], dict[int, dict[int, int]]]:
    """Supervised metrics (`gcn_acc`, `gcn_acc_std`, `gcn_macro_f1`, ...: mean and std over the
    seeds), few-shot ones (`{model: {k: {acc_mean, acc_std, ...}}}`) and, per k, the classes with
    fewer than k train nodes."""
    regimes = [None, *shots]
    metrics, fewshot, short_classes = {}, {}, {}
    with Progress(disable=quiet, transient=True) as progress:
        task = progress.add_task("training", total=len(regimes) * len(models) * seeds)
        for k in regimes:
            sets, short = train_sets(data, k=k, seeds=seeds, num_classes=num_classes)
            if short:
                short_classes[k] = short
            for kind in models:
                runs = [
                    fit(kind, data, train, num_classes=num_classes, seed=seed,
                        max_epochs=max_epochs, patience=patience)
                    for seed, train in enumerate(sets)
                ]  # fmt: skip
                progress.advance(task, len(runs))
                summary = summarise(runs)
                if k is None:
                    for name in ("acc", "macro_f1"):
                        metrics[f"{kind}_{name}"] = summary[f"{name}_mean"]
                        metrics[f"{kind}_{name}_std"] = summary[f"{name}_std"]
                else:
                    fewshot.setdefault(kind, {})[str(k)] = summary
    return metrics, fewshot, short_classes


def require_edges(data, folder: Path) -> None:
    """Every split needs products with an edge: a GNN over a split without one is an MLP there."""
    degree = torch.bincount(data.edge_index[0], minlength=data.num_nodes)
    for name in SPLITS:
        if not bool((degree[getattr(data, f"{name}_mask")] > 0).any()):
            raise DataError(
                f"{folder}: no product of the {name!r} split has a co-purchase edge: "
                "the GNNs would have no graph there"
            )


def nodeclass(
    model: LoadedModel,
    shards: str | Path,
    *,
    cache_dir: Path | None,
    features: str = "concat",
    models: Sequence[str] = MODELS,
    shots: Sequence[int] = (),
    seeds: int = 3,
    structure: bool = False,
    max_epochs: int = MAX_EPOCHS,
    patience: int = PATIENCE,
    quiet: bool = False,
) -> dict:
    """MAGB's transductive node classification of the test split's products, the result dict
    with `metrics` (and with `structure` `graph_metrics`: the same GNNs on the graph-refined
    embeddings) and, for each k of `shots`, `fewshot`. CUDA when there is one, else the CPU."""
    if features not in FEATURES:
        raise DataError(f"--features: {features!r} is not one of {', '.join(FEATURES)}")
    splits = [open_split(shards, name) for name in SPLITS]  # every refusal before any encoding
    test = splits[-1]
    if not test.label_names:
        raise DataError(f"{test.folder}: the manifest has no label_names: nothing to classify")
    for split in splits:
        graph_ready(model, split, structure)
    with tempfile.TemporaryDirectory(prefix="slip-nodeclass-") as folder:
        write_embeddings(
            model,
            shards,
            Path(folder),
            splits=list(SPLITS),
            structure=structure,
            cache_dir=cache_dir,
            quiet=quiet,
        )
        variants = {"metrics": to_pyg(folder, shards, features=features)}
        if structure:
            variants["graph_metrics"] = to_pyg(folder, shards, features=features, structure=True)
    require_edges(variants["metrics"], test.folder)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result = result_header(model, test, "nodeclass")
    data = variants["metrics"]
    result.update(
        features=features,
        models=list(models),
        seeds=seeds,
        nodes={name: int(getattr(data, f"{name}_mask").sum()) for name in SPLITS},
        edges=int(data.edge_index.shape[1]) // 2,
        hyperparameters={
            "layers": LAYERS,
            "hidden": HIDDEN,
            "dropout": DROPOUT,
            "gat_heads": GAT_HEADS,
            "lr": LR,
            "weight_decay": WEIGHT_DECAY,
            "max_epochs": max_epochs,
            "patience": patience,
        },
        device=device.type,
    )
    if shots:
        result["fewshot"], result["short_classes"] = {}, {}
    for key, data in variants.items():
        metrics, fewshot, short = classify_nodes(
            data.to(device),
            num_classes=len(test.label_names),
            models=models,
            shots=shots,
            seeds=seeds,
            max_epochs=max_epochs,
            patience=patience,
            quiet=quiet,
        )
        result[key] = metrics
        if shots:
            result["fewshot"][key] = fewshot
        for k, classes in short.items():
            result["short_classes"][str(k)] = {test.label_names[c]: n for c, n in classes.items()}
    return result
