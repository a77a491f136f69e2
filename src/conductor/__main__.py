"""``python -m src.conductor``: the command line (serves the HTTP API when given no command)."""

from .cli.main import main

main()
