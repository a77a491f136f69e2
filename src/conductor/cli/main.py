"""The ``python -m src.conductor`` command line: a small typer app, one module per command.

With no command it serves the HTTP API, because that is what the guide's
``python -m src.conductor`` has always meant. Options given before the command are kept in
``ctx.obj`` and merged into the command's own (see :mod:`.commands.common`), so
``--config``/``--log-level`` work on either side of the command name.
"""

from __future__ import annotations

import typer

from . import ask, chat, serve, status
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
)

_ROOT = __package__.split(".")[0] if __package__ else "demi"
PROG_NAME = "python -m src.conductor" if _ROOT == "src" else _ROOT
"""How help texts name the command: the guide's from a checkout, ``demi`` once installed."""

app = typer.Typer(
    name="demi",
    help="DEMI conductor: local-first LLM failover (Ollama, then LM Studio, then the "
    "embedded model). Without a command it serves the HTTP API.",
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("serve")(serve.serve)
app.command("chat")(chat.chat)
app.command("ask")(ask.ask)
app.command("status")(status.status)


@app.callback()
def root(
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
    """Keep the options given before the command; serve when there is no command."""
    opts = Options(
        config=config,
        log_level=log_level,
        host=host,
        port=port,
        ollama_url=ollama_url,
        lmstudio_url=lmstudio_url,
        no_fallback=no_fallback,
        provider=provider,
    )
    if ctx.invoked_subcommand is None:
        raise typer.Exit(serve.start(opts))
    ctx.obj = opts


def main() -> None:
    """Entry point for ``python -m src.conductor``; exits with the command's status."""
    app(prog_name=PROG_NAME)
