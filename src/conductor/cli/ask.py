"""``ask``: one question, one answer, for scripts and quick checks from a shell.

The answer streams to stdout as it arrives and nothing else goes there, so
``python -m src.conductor ask "..." > answer.txt`` captures exactly the reply; errors and
logs go to stderr. ``--json`` trades streaming for the whole result with its provenance.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from ...llm import (
    AllProvidersFailed,
    ChatResult,
    RequestError,
    StreamInterrupted,
    UnifiedLLMInference,
)
from .common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    ConfigOpt,
    JsonOpt,
    LMStudioUrlOpt,
    LogLevelOpt,
    NoFallbackOpt,
    OllamaUrlOpt,
    Options,
    command_options,
    fail,
    load,
    run,
)

PromptArg = Annotated[
    str | None,
    typer.Argument(help="The question; read from stdin when omitted or '-'.", show_default=False),
]
SystemOpt = Annotated[
    str | None, typer.Option("--system", metavar="TEXT", help="A system message sent first.")
]
PinOpt = Annotated[
    str | None,
    typer.Option(
        "--provider",
        metavar="NAME",
        help="Answer with NAME only: it becomes the "
        "primary and is pinned, so there is no fallback.",
    ),
]

JSON_FIELDS = (
    "text",
    "provider",
    "model",
    "fallback_used",
    "prompt_tokens",
    "completion_tokens",
    "latency",
)


def ask(
    ctx: typer.Context,
    prompt: PromptArg = None,
    system: SystemOpt = None,
    provider: PinOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    log_level: LogLevelOpt = None,
    ollama_url: OllamaUrlOpt = None,
    lmstudio_url: LMStudioUrlOpt = None,
    no_fallback: NoFallbackOpt = False,
) -> None:
    """Ask one question and print the answer (exit 1 when every provider failed)."""
    opts = command_options(
        ctx,
        Options(
            config=config,
            log_level=log_level,
            ollama_url=ollama_url,
            lmstudio_url=lmstudio_url,
            no_fallback=no_fallback,
            provider=provider,
        ),
    )
    text = sys.stdin.read() if prompt in (None, "-") else prompt
    if not text or not text.strip():
        fail("the prompt is empty: give it as an argument or on stdin", EXIT_USAGE)
    cfg, logger = load(opts, quiet=True)
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": text.strip()})

    async def answer() -> int:
        async with UnifiedLLMInference(cfg, logger) as llm:
            if opts.provider is not None:
                llm.force_provider(opts.provider)
            try:
                result = await (_collect(llm, messages) if as_json else _stream(llm, messages))
            except (AllProvidersFailed, RequestError, StreamInterrupted) as exc:
                typer.echo(f"error: {exc}", err=True)
                return EXIT_FAILED
        if as_json:
            typer.echo(json.dumps({k: getattr(result, k) for k in JSON_FIELDS}, indent=2))
        return EXIT_OK

    raise typer.Exit(run(answer()))


async def _collect(llm: UnifiedLLMInference, messages: list[dict[str, str]]) -> ChatResult:
    return await llm.chat_detailed(messages)


async def _stream(llm: UnifiedLLMInference, messages: list[dict[str, str]]) -> ChatResult:
    """Print each chunk as it arrives; end with a newline so the shell prompt starts clean."""
    reply = await llm.open_stream(messages)
    try:
        async for chunk in reply:
            if chunk.text:
                sys.stdout.write(chunk.text)
                sys.stdout.flush()
    finally:
        if reply.text and not reply.text.endswith("\n"):
            sys.stdout.write("\n")
            sys.stdout.flush()
    return reply.result()
