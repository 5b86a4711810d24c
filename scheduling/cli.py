"""The ``cqrs-scheduling`` command line."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Scheduled commands for a CQRS mediator.")


@app.command()
def demo() -> None:
    """Run a short showcase."""
    typer.echo("demo")


def main() -> None:
    app()
