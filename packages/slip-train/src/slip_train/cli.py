"""Command line of slip-train. The training loop lands with the slip-train issue."""

import typer

app = typer.Typer(help="Train CLIP plus a graph head on slip-data shards.", no_args_is_help=True)


@app.command()
def run(config: str = typer.Argument(..., help="Path to a TOML training config.")) -> None:
    """Train from a TOML config (not implemented yet: see the slip-train issue)."""
    typer.echo(f"error: slip-train run is not implemented yet (config {config})", err=True)
    raise typer.Exit(2)


@app.command()
def version() -> None:
    """Print the package version."""
    from slip_train import __version__

    typer.echo(__version__)
