"""The conductor: DEMI's front door.

``server.py`` serves the OpenAI- and Ollama-compatible HTTP API; ``cli.py`` is the command
line (``python -m src.conductor``) with one module per command under ``commands/``. See
README.md in this folder.
"""
