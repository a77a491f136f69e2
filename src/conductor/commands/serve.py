"""``serve``: run the conductor's HTTP API (the default when no command is given).

The server module is imported only here, when serving: the terminal commands must not pay
for (or break on) the HTTP stack, and a checkout without the server still runs them.
Signals are the server's business: it drains requests for ``conductor.shutdown_grace``
seconds on the first SIGINT/SIGTERM and stops at once on the second.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import typer

from src.core.config import DemiConfig

from .common import (
    EXIT_FAILED,
    ConfigOpt,
    HostOpt,
    LMStudioUrlOpt,
    LogLevelOpt,
    NoFallbackOpt,
    OllamaUrlOpt,
    Options,
    PortOpt,
    PrimaryOpt,
    command_options,
    fail,
    load,
    run,
)


def serve(
    ctx: typer.Context,
    config: ConfigOpt = None,
    log_level: LogLevelOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    ollama_url: OllamaUrlOpt = None,
    lmstudio_url: LMStudioUrlOpt = None,
    no_fallback: NoFallbackOpt = False,
    provider: PrimaryOpt = None,
) -> None:
    """Serve the OpenAI- and Ollama-compatible HTTP API (default port 8420)."""
    opts = command_options(
        ctx,
        Options(
            config=config,
            log_level=log_level,
            host=host,
            port=port,
            ollama_url=ollama_url,
            lmstudio_url=lmstudio_url,
            no_fallback=no_fallback,
            provider=provider,
        ),
        serves=True,
    )
    raise typer.Exit(start(opts))


class ServeHttp(Protocol):
    """The contract with ``src.conductor.server.serve``: run until stopped, return the code."""

    def __call__(
        self,
        config: DemiConfig,
        logger: logging.Logger,
        *,
        ready: Callable[[str], None] | None = None,
    ) -> Coroutine[Any, Any, int]: ...


def start(opts: Options) -> int:
    """Load the config, set up logging and run the server until it stops; its exit code."""
    cfg, logger = load(opts)
    try:
        # By name, not ``from .server import serve``: the server is someone else's module,
        # and type-checking the CLI should not mean type-checking the whole HTTP stack.
        server = importlib.import_module("src.conductor.server")
    except ModuleNotFoundError as exc:
        if exc.name != "src.conductor.server":
            raise  # a dependency of the server is missing: the traceback says which
        fail(
            "the HTTP server (src/conductor/server.py) is not part of this installation",
            EXIT_FAILED,
        )
    serve_http: ServeHttp = server.serve
    return run(serve_http(cfg, logger))
