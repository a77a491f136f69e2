"""``serve``: run the conductor's HTTP API (the default when no command is given).

The server module is imported only here, when serving: the terminal commands must not pay
for (or break on) the HTTP stack, and a checkout without the server still runs them.
Signals are the server's business: it drains requests for ``conductor.shutdown_grace``
seconds on the first SIGINT/SIGTERM and stops at once on the second.
"""

from __future__ import annotations

import typer

from .common import (
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


def start(opts: Options) -> int:
    """Load the config, set up logging and run the server until it stops; its exit code."""
    cfg, logger = load(opts)
    from ..http.server import serve as serve_http  # only when serving: the HTTP stack

    return run(serve_http(cfg, logger))
