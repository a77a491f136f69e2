"""One module per command of ``python -m src.conductor``; ``common`` holds what they share."""
