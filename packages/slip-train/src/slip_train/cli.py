"""`slip-train`: structure-aware CLIP training from a TOML config."""

import json
import math
import os
from pathlib import Path
from typing import Annotated

import typer

from slip_train import entry
from slip_train.config import load_config, to_dict

app = typer.Typer(
    help="Train CLIP plus a graph head on slip-data shards.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

ConfigPath = Annotated[Path, typer.Argument(help="A TOML training config (docs/config.md).")]
Overrides = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override a key with a TOML value or a plain word, e.g. --set optim.lr=3e-4."
    ),
]


@app.command()
def config(path: ConfigPath, overrides: Overrides = None) -> None:
    """Print the config as the run would use it: defaults, the file, then the overrides."""
    typer.echo(json.dumps(to_dict(load_config(path, overrides or [])), indent=2))


@app.command()
def run(
    *,
    path: ConfigPath,
    overrides: Overrides = None,
    resume: Annotated[
        str | None,
        typer.Option(help="Continue from a checkpoint file, or `latest` in train.out_dir."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Train from a config: checkpoints and log.jsonl go to train.out_dir. Under torchrun
    (`torchrun --nproc_per_node N -m slip_train run ...`) on N processes, batch_size per rank."""
    from slip_train.train import train

    result = train(load_config(path, overrides or []), resume=resume, show_progress=not quiet)
    if os.environ.get("RANK", "0") != "0":
        return  # rank 0 says how it ended
    if math.isnan(result.last_loss):
        typer.echo(
            f"step {result.step}: train.steps already reached; checkpoint {result.checkpoint}"
        )
    else:
        typer.echo(
            f"step {result.step}: loss {result.last_loss:.4f}; checkpoint {result.checkpoint}"
        )


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="A slip-train checkpoint (step-*.pt).")],
    out: Annotated[Path, typer.Option(file_okay=False, help="Folder for the open_clip export.")],
) -> None:
    """Write a checkpoint's CLIP encoders as open_clip loads them (docs/checkpoint-format.md)."""
    from slip_train.checkpoint import export_open_clip, load_checkpoint

    weights = export_open_clip(load_checkpoint(checkpoint), out)
    typer.echo(f"wrote {weights}: open_clip.create_model('local-dir:{out}')")


@app.command()
def version() -> None:
    """Print the package version."""
    from slip_train import __version__

    typer.echo(__version__)


def main() -> None:
    """Entry point: a user's error is one line on stderr (exit status 2), a bug a traceback and
    a request to report it (exit status 1); entry.py."""
    entry.run(app, "slip-train")
