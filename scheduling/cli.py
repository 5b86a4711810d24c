"""The ``cqrs-scheduling`` command line (also ``python -m scheduling``).

Built on Typer: typed options, generated ``--help``, and Click's exit-code conventions (2 for usage errors).
"""

from __future__ import annotations

import asyncio

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Scheduled commands for a CQRS mediator: run the demo, workers and operator commands.",
)


@app.callback()
def _root() -> None:
    """Scheduled commands for a CQRS mediator."""


@app.command()
def demo() -> None:
    """Run a few-second showcase: delays, priorities, retries, a dead letter, an expiry and a cancellation."""
    from .demo import run_demo

    asyncio.run(run_demo())


def main() -> None:
    """Console-script entry point."""
    app()
