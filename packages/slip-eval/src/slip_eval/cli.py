"""Command line of slip-eval. The benchmarks land with the slip-eval issue."""

import typer

app = typer.Typer(
    help="Evaluate SLIP and CLIP checkpoints on slip-data shards.", no_args_is_help=True
)


@app.command()
def retrieval(ckpt: str = typer.Option(..., help="Checkpoint to evaluate.")) -> None:
    """Image-text retrieval (not implemented yet: see the slip-eval issue)."""
    typer.echo(f"error: slip-eval retrieval is not implemented yet (ckpt {ckpt})", err=True)
    raise typer.Exit(2)


@app.command()
def version() -> None:
    """Print the package version."""
    from slip_eval import __version__

    typer.echo(__version__)
