"""``status``: is each provider reachable, does it have the model, which one is in use.

It replaces the guide's ``curl .../api/tags`` and ``curl .../v1/models`` checks with the
checks DEMI itself runs, so "status says reachable" and "DEMI will use it" mean the same
thing. The exit code makes it usable as a readiness probe in scripts: 1 when no provider is
usable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import typer

from ...llm import UnifiedLLMInference
from .common import (
    EXIT_FAILED,
    EXIT_OK,
    ConfigOpt,
    JsonOpt,
    LMStudioUrlOpt,
    LogLevelOpt,
    NoFallbackOpt,
    OllamaUrlOpt,
    Options,
    PrimaryOpt,
    command_options,
    load,
    run,
)

COLUMNS = ("PROVIDER", "URL", "REACHABLE", "MODEL", "PRESENT", "LATENCY", "CIRCUIT", "ACTIVE")


def status(
    ctx: typer.Context,
    config: ConfigOpt = None,
    log_level: LogLevelOpt = None,
    ollama_url: OllamaUrlOpt = None,
    lmstudio_url: LMStudioUrlOpt = None,
    no_fallback: NoFallbackOpt = False,
    provider: PrimaryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check every provider now and print a table (exit 1 when none is usable)."""
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
    cfg, logger = load(opts, quiet=True)

    async def check() -> int:
        async with UnifiedLLMInference(cfg, logger) as llm:
            await llm.wait_loading(llm.config.llm.embedded.load_wait)
            report = await llm.health(refresh=True)
            rows = [report[name] for name in llm.chain]
            usable = any(row["usable"] for row in rows)
            if as_json:
                typer.echo(
                    json.dumps(
                        {
                            "usable": usable,
                            "active": llm.active_provider,
                            "pinned": llm.forced_provider,
                            "providers": rows,
                        },
                        indent=2,
                        default=str,
                    )
                )
            else:
                typer.echo(render(rows))
                if not usable:
                    typer.echo(no_provider_hint(rows))
            return EXIT_OK if usable else EXIT_FAILED

    raise typer.Exit(run(check()))


def render(rows: Sequence[Mapping[str, Any]]) -> str:
    """The provider table as plain aligned text, then the reason for each unreachable one."""
    table = [COLUMNS, *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]
    notes = [
        f"{row['name']}: {row['last_error']}"
        for row in rows
        if not row["healthy"] and row.get("last_error")
    ]
    return "\n".join([*lines, "", *notes] if notes else lines)


def _cells(row: Mapping[str, Any]) -> tuple[str, ...]:
    if row["healthy"]:
        reachable = "yes"
    elif row["loading"]:
        reachable = "loading"
    else:
        reachable = "no"
    present = {True: "yes", False: "no", None: "-"}[row["model_present"]]
    latency = f"{row['latency_ms']:.0f} ms" if row["healthy"] else "-"
    return (
        row["name"],
        row["base_url"] or "(engine process)",
        reachable,
        row["model"] or "(loaded model)",
        present,
        latency,
        row["circuit"],
        "*" if row["active"] else "",
    )


def no_provider_hint(rows: Sequence[Mapping[str, Any]]) -> str:
    """What to do when nothing is usable: start a provider or fix its URL."""
    names = ", ".join(row["display_name"] for row in rows)
    return (
        f"No provider is usable ({names}). Start one (`ollama serve`, or LM Studio's "
        "server) or point --ollama-url / --lmstudio-url at where it runs."
    )
