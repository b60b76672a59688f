"""`slip-eval`: retrieval and zero/few-shot classification of SLIP and CLIP models on slip-data
shards, results as CLIP_benchmark-shaped JSON, side-by-side tables and a chart."""

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from slip_eval import entry, options
from slip_eval.bounds import number
from slip_eval.results import remove_run_temps

app = typer.Typer(
    help="Evaluate SLIP checkpoints and open_clip models on slip-data shards.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

Ckpt = Annotated[
    str | None,
    typer.Option(help="A slip-train checkpoint (step-*.pt) or an open_clip export folder."),
]
Model = Annotated[str | None, typer.Option(help="An open_clip model name, instead of --ckpt.")]
Pretrained = Annotated[
    str | None, typer.Option(help="With --model: an open_clip tag (openai, ...) or weights file.")
]
ModelConfig = Annotated[
    Path | None,
    typer.Option(help="With --model: an open_clip model config JSON (or a folder of them)."),
]
Shards = Annotated[Path, typer.Option(help="A slip-data build folder or its shards/ folder.")]
Split = Annotated[Literal["train", "val", "test"], typer.Option(help="The split evaluated.")]
Structure = Annotated[
    bool,
    typer.Option(
        "--structure/--no-structure",
        help="Also the embeddings refined by the checkpoint's graph heads, beside the plain.",
    ),
]
Out = Annotated[Path | None, typer.Option(dir_okay=False, help="Write the result JSON here.")]
CacheDir = Annotated[
    Path, typer.Option(help="Embedding cache, keyed by weights, shards and split.")
]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress bar.")]


def _model(
    ckpt: str | None,
    model: str | None,
    pretrained: str | None,
    model_config: Path | None,
    *,
    cache_dir: Path,
    out: Path | None,
):
    """The model the options name, once the temps of killed runs are swept from the embedding
    cache and beside `out`."""
    from slip_eval.models import load_model

    remove_run_temps(cache_dir, out)
    return load_model(ckpt, model, pretrained, model_config=model_config)


def _finish(result: dict, out: Path | None) -> None:
    from slip_eval.results import markdown_table, write_result

    if out is not None:
        write_result(result, out)
    typer.echo(markdown_table([result]))
    for note in result.get("notes", []):
        typer.echo(f"note: {note}", err=True)
    for k, classes in result.get("short_classes", {}).items():
        listed = ", ".join(f"{name} ({n})" for name, n in classes.items())
        typer.echo(f"note: {k}-shot: fewer than {k} train examples, all taken: {listed}", err=True)


@app.command()
def retrieval(
    *,
    ckpt: Ckpt = None,
    model: Model = None,
    pretrained: Pretrained = None,
    model_config: ModelConfig = None,
    shards: Shards = Path("out/demo"),
    split: Split = "test",
    structure: Structure = False,
    out: Out = None,
    cache_dir: CacheDir = Path("out/eval-cache"),
    chunk_size: Annotated[int, number("Query rows scored at once.", at_least=1)] = 1024,
    quiet: Quiet = False,
) -> None:
    """Image→text and text→image Recall@1/5/10, MRR and median rank over a split."""
    from slip_eval.tasks import retrieval as run_retrieval

    loaded = _model(ckpt, model, pretrained, model_config, cache_dir=cache_dir, out=out)
    result = run_retrieval(
        loaded,
        shards,
        split,
        cache_dir=cache_dir,
        structure=structure,
        chunk_size=chunk_size,
        quiet=quiet,
    )
    _finish(result, out)


@app.command()
def classify(
    *,
    ckpt: Ckpt = None,
    model: Model = None,
    pretrained: Pretrained = None,
    model_config: ModelConfig = None,
    shards: Shards = Path("out/demo"),
    split: Split = "test",
    structure: Structure = False,
    shots: Annotated[str, typer.Option(help="Comma-separated k; 0 is zero-shot.")] = "0,1,2,4,8,16",
    seeds: Annotated[int, number("Few-shot draws averaged (mean and std).", at_least=1)] = 3,
    templates: Annotated[
        Path | None, typer.Option(help="A JSON list of prompt templates with {c}.")
    ] = None,
    out: Out = None,
    cache_dir: CacheDir = Path("out/eval-cache"),
    quiet: Quiet = False,
) -> None:
    """Zero-shot (prompts over label names) and few-shot (prototype, linear probe) accuracy."""
    from slip_eval.tasks import DEFAULT_TEMPLATES, classification

    ks = options.shots(shots)
    if not ks:
        raise ValueError(f"--shots: {shots!r}: give one k or more (0 is zero-shot)")
    prompts = DEFAULT_TEMPLATES
    if templates is not None:
        try:
            prompts = json.loads(templates.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"--templates {templates}: not a readable JSON list ({exc})") from None
        if not (isinstance(prompts, list) and prompts and all("{c}" in str(t) for t in prompts)):
            raise ValueError(f"--templates {templates}: expected a list of strings with {{c}}")
    loaded = _model(ckpt, model, pretrained, model_config, cache_dir=cache_dir, out=out)
    result = classification(
        loaded,
        shards,
        split,
        cache_dir=cache_dir,
        shots=ks,
        seeds=seeds,
        templates=prompts,
        structure=structure,
        quiet=quiet,
    )
    _finish(result, out)


@app.command()
def linkpred(
    *,
    ckpt: Ckpt = None,
    model: Model = None,
    pretrained: Pretrained = None,
    model_config: ModelConfig = None,
    shards: Shards = Path("out/demo"),
    split: Split = "test",
    structure: Structure = False,
    edges: Annotated[
        Literal["within", "touching"],
        typer.Option(
            help="The edges ranked: within, both ends in --split; touching, one end at least "
            "(the other in any split: many more edges when the split is small)."
        ),
    ] = "within",
    negatives: Annotated[
        Literal["random", "hard"],
        typer.Option(help="random: any product not linked to the source; hard: its 2-hop ones."),
    ] = "random",
    per_positive: Annotated[
        int, number("Negatives ranked against each true edge.", at_least=1)
    ] = 100,
    holdout: Annotated[
        float,
        number(
            "Share of the --edges held out as true edges; every other edge is the observed "
            "graph that --structure and --predictors use.",
            above=0,
            at_most=1,
        ),
    ] = 0.5,
    seed: Annotated[int, number("Picks the held-out edges and the negatives.", at_least=0)] = 0,
    predictors: Annotated[
        str,
        typer.Option(help="Also GNN link predictors trained on the observed edges: sage, gcn."),
    ] = "",
    out: Out = None,
    cache_dir: CacheDir = Path("out/eval-cache"),
    quiet: Quiet = False,
) -> None:
    """Link prediction of co-purchases within or touching the split: MRR and Hits@1/3/10 of each
    held-out edge against its negatives, by cosine of image, text and fused embeddings (MM-GRAPH's
    protocol)."""
    from slip_eval.linkpred import PREDICTORS
    from slip_eval.tasks import linkpred as run_linkpred

    kinds = options.names(predictors, flag="--predictors", allowed=PREDICTORS, required=False)
    loaded = _model(ckpt, model, pretrained, model_config, cache_dir=cache_dir, out=out)
    result = run_linkpred(
        loaded,
        shards,
        split,
        cache_dir=cache_dir,
        edges=edges,
        negatives=negatives,
        per_positive=per_positive,
        holdout=holdout,
        seed=seed,
        predictors=kinds,
        structure=structure,
        quiet=quiet,
    )
    _finish(result, out)


@app.command()
def nodeclass(
    *,
    ckpt: Ckpt = None,
    model: Model = None,
    pretrained: Pretrained = None,
    model_config: ModelConfig = None,
    shards: Shards = Path("out/demo"),
    features: Annotated[
        Literal["image", "text", "concat"],
        typer.Option(help="The node features: image or text embeddings, or both side by side."),
    ] = "concat",
    models: Annotated[
        str, typer.Option(help="Comma-separated, of gcn, sage, gat and mlp.")
    ] = "gcn,sage,gat,mlp",
    shots: Annotated[
        str,
        typer.Option(help="Comma-separated k: also train on k train labels per class (few-shot)."),
    ] = "",
    seeds: Annotated[int, number("Fits per model and regime (mean and std).", at_least=1)] = 3,
    max_epochs: Annotated[int, number("Epochs at most per fit.", at_least=1)] = 200,
    patience: Annotated[
        int, number("Stop a fit after this many epochs without a better val accuracy.", at_least=1)
    ] = 20,
    structure: Structure = False,
    out: Out = None,
    cache_dir: CacheDir = Path("out/eval-cache"),
    quiet: Quiet = False,
) -> None:
    """Node classification of the test split: GCN, GraphSAGE, GAT and an MLP trained on the frozen
    embeddings over the whole co-purchase graph, early-stopped on val; test accuracy and
    macro-F1 (MAGB's protocol)."""
    from slip_eval.nodeclass import MODELS
    from slip_eval.nodeclass import nodeclass as run_nodeclass

    chosen = options.names(models, flag="--models", allowed=MODELS)
    ks = options.shots(shots, at_least=1)
    loaded = _model(ckpt, model, pretrained, model_config, cache_dir=cache_dir, out=out)
    result = run_nodeclass(
        loaded,
        shards,
        cache_dir=cache_dir,
        features=features,
        models=chosen,
        shots=ks,
        seeds=seeds,
        structure=structure,
        max_epochs=max_epochs,
        patience=patience,
        quiet=quiet,
    )
    _finish(result, out)


@app.command()
def embed(
    *,
    ckpt: Ckpt = None,
    model: Model = None,
    pretrained: Pretrained = None,
    model_config: ModelConfig = None,
    shards: Shards = Path("out/demo"),
    out: Annotated[
        Path,
        typer.Option(
            file_okay=False, help="The embeddings folder: a Parquet file per split, a manifest."
        ),
    ],
    split: Annotated[
        str, typer.Option(help="Comma-separated splits embedded (train, val, test).")
    ] = "train,val,test",
    structure: Structure = False,
    cache_dir: CacheDir = Path("out/eval-cache"),
    quiet: Quiet = False,
) -> None:
    """Every product's normalised image and text embeddings (and with --structure the
    graph-refined ones) as Parquet keyed by node_id and parent_asin, for graph ML
    (docs/embeddings-format.md)."""
    from slip_eval.atomic import remove_stale_temps
    from slip_eval.data import SPLITS
    from slip_eval.embeddings import MANIFEST, write_embeddings

    splits = options.names(split, flag="--split", allowed=SPLITS)
    remove_stale_temps(out, recursive=False)
    loaded = _model(ckpt, model, pretrained, model_config, cache_dir=cache_dir, out=None)
    manifest = write_embeddings(
        loaded,
        shards,
        out,
        splits=splits,
        structure=structure,
        cache_dir=cache_dir,
        quiet=quiet,
    )
    for written in manifest["files"]:
        typer.echo(f"wrote {out / written['path']} ({written['rows']} rows)")
    typer.echo(f"wrote {out / MANIFEST}")


@app.command()
def compare(
    results: Annotated[list[Path], typer.Argument(help="Result JSON files, side by side.")],
    chart: Annotated[
        Path | None, typer.Option(dir_okay=False, help="Write a bar chart PNG here.")
    ] = None,
    shards: Annotated[
        Path | None,
        typer.Option(help="The evaluated shards: print their graph's label homophily too."),
    ] = None,
) -> None:
    """A side-by-side table of result files, optionally a bar chart, and the evaluated graph's
    label homophily (how far SLIP's neighbours share the label)."""
    from slip_eval.homophily import graph_homophily, homophily_lines
    from slip_eval.results import bar_chart, markdown_table, read_result

    loaded = [read_result(path) for path in results]
    labels = [f"{r['model']} ({Path(p).stem})" for r, p in zip(loaded, results, strict=True)]
    typer.echo(markdown_table(loaded, labels))
    if chart is not None:
        bar_chart(loaded, labels, chart)
        typer.echo(f"wrote {chart}")
    if shards is not None:
        stats = graph_homophily(shards)
        lines = (
            ["the shards predate slip-data recording it"]
            if stats is None
            else (homophily_lines(stats))
        )
        typer.echo("\nlabel homophily of the co-purchase graph:\n  " + "\n  ".join(lines))


@app.command()
def report(
    *,
    results: Annotated[
        list[Path],
        typer.Argument(help="Result JSON files of retrieval, classify, linkpred, nodeclass."),
    ],
    out: Annotated[
        Path, typer.Option(file_okay=False, help="The report folder: index.html and its images.")
    ],
    shards: Annotated[
        Path | None,
        typer.Option(help="The evaluated shards: for the retrieval gallery and neighbourhood."),
    ] = None,
    cache_dir: CacheDir = Path("out/eval-cache"),
    queries: Annotated[int, number("Title queries in the retrieval gallery.", at_least=1)] = 6,
    seed: Annotated[int, number("Picks the queries and the neighbourhood.", at_least=0)] = 0,
    experiment: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False,
            help="The summary.json of bench/experiments/slip_vs_clip.py: plot SLIP − CLIP "
            "against label homophily.",
        ),
    ] = None,
    quiet: Quiet = False,
) -> None:
    """A static HTML report comparing models: tables, plots, a retrieval gallery, a co-purchase
    neighbourhood, and an experiment's SLIP − CLIP against label homophily."""
    from slip_eval.report import build_report

    remove_run_temps(cache_dir, out)
    index = build_report(
        results,
        out,
        shards=shards,
        cache_dir=cache_dir,
        n_queries=queries,
        seed=seed,
        quiet=quiet,
        experiment=experiment,
    )
    typer.echo(f"wrote {index}")


@app.command()
def version() -> None:
    """Print the package version."""
    from slip_eval import __version__

    typer.echo(__version__)


def main() -> None:
    """Entry point: a user's error becomes one line on stderr and exit status 2; a bug shows its
    traceback and asks to be reported (entry.py)."""
    entry.run(app, "slip-eval")
