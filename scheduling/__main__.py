"""``python -m scheduling``: the same command line as ``cqrs-scheduling``."""

from .cli import main

main()
