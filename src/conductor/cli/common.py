"""What every command shares: the common options, loading the config, and the exit codes.

Options may be given before the command (``python -m src.conductor --config x.yaml status``)
or after it; the callback in ``cli.py`` keeps the ones given first in an :class:`Options`
and each command lays its own on top with :meth:`Options.merged`. Flags turn into dotted
config overrides so the config loader stays the only place that validates values, and a bad
flag gets the same "key = value (from command line): ..." message as a bad YAML value.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from ...core.config import DemiConfig, load_config
from ...core.errors import ConfigError
from ...core.logsetup import setup_logging

EXIT_OK = 0
EXIT_FAILED = 1  # the LLM could not answer, or no provider is usable
EXIT_USAGE = 2  # bad configuration or command line (click uses 2 for usage errors too)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="PATH",
        help="User YAML file laid over the defaults (default: $DEMI_CONFIG).",
    ),
]
LogLevelOpt = Annotated[
    str | None,
    typer.Option("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR."),
]
HostOpt = Annotated[
    str | None, typer.Option("--host", help="Address the HTTP API listens on (conductor.host).")
]
PortOpt = Annotated[
    int | None, typer.Option("--port", help="Port the HTTP API listens on (conductor.port).")
]
OllamaUrlOpt = Annotated[
    str | None,
    typer.Option("--ollama-url", metavar="URL", help="Ollama base URL (llm.ollama.base_url)."),
]
LMStudioUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--lmstudio-url", metavar="URL", help="LM Studio base URL (llm.lmstudio.base_url)."
    ),
]
NoFallbackOpt = Annotated[
    bool,
    typer.Option("--no-fallback", help="Use the primary provider only (llm.enable_fallback)."),
]
PrimaryOpt = Annotated[
    str | None,
    typer.Option(
        "--provider",
        metavar="NAME",
        help="Provider tried first (llm.provider); the others stay as fallbacks.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@dataclass(frozen=True, slots=True)
class Options:
    """The command-line flags that become configuration overrides."""

    config: Path | None = None
    log_level: str | None = None
    host: str | None = None
    port: int | None = None
    ollama_url: str | None = None
    lmstudio_url: str | None = None
    no_fallback: bool = False
    provider: str | None = None

    def merged(self, later: Options) -> Options:
        """These options with every flag that ``later`` actually sets laid on top."""
        given = {f.name: getattr(later, f.name) for f in fields(later)}
        return replace(self, **{k: v for k, v in given.items() if v not in (None, False)})

    def overrides(self) -> dict[str, Any]:
        """Dotted config keys for ``load_config``; None means "not given" and is skipped."""
        return {
            "logging.level": self.log_level,
            "conductor.host": self.host,
            "conductor.port": self.port,
            "llm.ollama.base_url": self.ollama_url,
            "llm.lmstudio.base_url": self.lmstudio_url,
            "llm.enable_fallback": False if self.no_fallback else None,
            "llm.provider": self.provider,
        }


def command_options(ctx: typer.Context, here: Options, *, serves: bool = False) -> Options:
    """Options given before the command merged with the command's own.

    ``--host``/``--port`` before a command other than ``serve`` would be silently ignored,
    which hides typos in scripts, so they are a usage error instead.
    """
    before = ctx.obj if isinstance(ctx.obj, Options) else Options()
    if not serves and (before.host is not None or before.port is not None):
        fail("--host and --port apply only to the serve command", EXIT_USAGE)
    return before.merged(here)


def fail(message: str, code: int) -> NoReturn:
    """One line on stderr and the exit code; never a traceback for an expected failure."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def load(opts: Options, *, quiet: bool = False) -> tuple[DemiConfig, logging.Logger]:
    """Load the configuration and set up logging, turning ConfigError into exit code 2.

    ``quiet`` is for the terminal commands (ask, chat, status): their stdout is the answer,
    and start-up INFO lines on the same terminal would drown it, so they log warnings and
    worse unless ``--log-level`` asks for more.
    """
    try:
        config = load_config(opts.config, opts.overrides())
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    cfg = config.logging
    if quiet and opts.log_level is None and logging.getLevelName(cfg.level) < logging.WARNING:
        cfg = cfg.model_copy(update={"level": "WARNING"})
    return config, setup_logging(cfg)


def run(main: Coroutine[Any, Any, int]) -> int:
    """Run a command's coroutine; map the errors every command can meet to exit codes.

    ConfigError can still surface here (``UnifiedLLMInference`` refuses a chain with no
    usable provider). Ctrl-C ends the command quietly: the user asked for it.
    """
    try:
        return asyncio.run(main)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130


def is_tty(stream: Any) -> bool:
    """Whether ``stream`` is an interactive terminal (False for pipes, files, closed streams)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
