"""``status``: is each provider reachable, does it have the model, which one is in use.

It replaces the guide's ``curl .../api/tags`` and ``curl .../v1/models`` checks with the
checks DEMI itself runs, so "status says reachable" and "DEMI will use it" mean the same
thing. The exit code makes it usable as a readiness probe in scripts: 1 when no provider is
usable.

When a DEMI conductor already answers on the configured address, ``status`` shows what
*that* conductor sees (its ``/status``) instead of building a chain of its own: the chain
that serves the user's apps is the one worth reporting, and a second embedded model started
just to report on itself would only be in the way.

``--discover`` adds the engines running on this machine's loopback ports, with their
models, whether the chain uses them, and the YAML that keeps each one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import aiohttp
import typer

from ...core.config import DemiConfig
from ...llm import FoundEngine, UnifiedLLMInference, find_engines, loopback_port, suggested_entry
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

COLUMNS = ("PROVIDER", "URL", "REACHABLE", "MODEL", "PRESENT", "LATENCY", "CIRCUIT", "ACTIVE",
           "SOURCE")
ENGINE_COLUMNS = ("PORT", "ENGINE", "MODELS", "IN USE")
ASK_TIMEOUT = 1.0
"""Seconds a running conductor gets to answer ``/status`` (it answers from its cache)."""

DiscoverOpt = Annotated[
    bool,
    typer.Option("--discover", help="Also list the engines running on this machine's "
                 "loopback ports, their models, and the config to use them."),
]


def status(
    ctx: typer.Context,
    config: ConfigOpt = None,
    log_level: LogLevelOpt = None,
    ollama_url: OllamaUrlOpt = None,
    lmstudio_url: LMStudioUrlOpt = None,
    no_fallback: NoFallbackOpt = False,
    provider: PrimaryOpt = None,
    as_json: JsonOpt = False,
    discover: DiscoverOpt = False,
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
        served = await ask_conductor(cfg)
        if served is not None:
            url, data = served
            rows = [data["providers"][n] for n in data["chain"]]
            report = {"usable": any(r["usable"] for r in rows),
                      "active": data.get("active_provider"),
                      "pinned": data.get("forced_provider"), "providers": rows,
                      "conductor": url}
        else:
            async with UnifiedLLMInference(cfg, logger) as llm:
                await llm.wait_loading(llm.config.llm.embedded.load_wait)
                health = await llm.health(refresh=True)
                rows = [health[name] for name in llm.chain]
                report = {"usable": any(r["usable"] for r in rows),
                          "active": llm.active_provider, "pinned": llm.forced_provider,
                          "providers": rows}
        engines = (await find_engines(cfg.llm.discover_ports,
                                      timeout=cfg.llm.health_check_timeout)
                   if discover else None)
        if as_json:
            if engines is not None:
                report["engines"] = [engine_row(e, rows) for e in engines]
            typer.echo(json.dumps(report, indent=2, default=str))
        else:
            if "conductor" in report:
                typer.echo(f"(as seen by the DEMI conductor on {report['conductor']})")
            typer.echo(render(rows))
            if not report["usable"]:
                typer.echo(no_provider_hint(rows))
            if engines is not None:
                typer.echo("")
                typer.echo(render_engines(engines, rows, cfg))
        return EXIT_OK if report["usable"] else EXIT_FAILED

    raise typer.Exit(run(check()))


async def ask_conductor(cfg: DemiConfig) -> tuple[str, dict[str, Any]] | None:
    """(its URL, its ``/status``) when a DEMI conductor answers on the configured address;
    None when nothing (or something else) listens there."""
    host = cfg.conductor.host
    host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    url = f"http://{f'[{host}]' if ':' in host else host}:{cfg.conductor.port}"
    headers = ({"Authorization": f"Bearer {cfg.conductor.api_key}"}
               if cfg.conductor.api_key else {})
    try:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=ASK_TIMEOUT),
        ) as session, session.get(f"{url}/status", headers=headers) as resp:
            if resp.status != 200:
                return None
            data = await resp.json(content_type=None)
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("service") != "demi-conductor":
        return None
    return url, data


def render(rows: Sequence[Mapping[str, Any]]) -> str:
    """The provider table as plain aligned text, then the reason for each unreachable one."""
    lines = _table(COLUMNS, [_cells(row) for row in rows])
    notes = [
        f"{row['name']}: {row['last_error']}"
        for row in rows
        if not row["healthy"] and row.get("last_error")
    ]
    return "\n".join([*lines, "", *notes] if notes else lines)


def _table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    table = [tuple(header), *(tuple(r) for r in body)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]


def _cells(row: Mapping[str, Any]) -> tuple[str, ...]:
    if row["healthy"]:
        reachable = "yes"
    elif row["loading"]:
        reachable = "loading"
    else:
        reachable = "no"
    present = {True: "yes", False: "no", None: "-"}[row["model_present"]]
    latency = f"{row['latency_ms']:.0f} ms" if row["healthy"] else "-"
    source = "discovered" if row.get("source") == "discovered" else "config"
    return (
        row["name"],
        row["base_url"] or "(engine process)",
        reachable,
        row["model"] or "(loaded model)",
        present,
        latency,
        row["circuit"],
        "*" if row["active"] else "",
        source,
    )


def engine_row(engine: FoundEngine, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One engine for ``--json`` and the table: where, what, whether the chain uses it."""
    user = next((r for r in rows if loopback_port(r.get("base_url")) == engine.port), None)
    name, snippet = suggested_entry(engine, [r["name"] for r in rows])
    if user is not None:
        in_use = (f"yes, discovered as {user['name']}" if user.get("source") == "discovered"
                  else f"yes, configured as {user['name']}")
    elif engine.needs_key:
        in_use = "no: it needs an API key"
    elif not engine.usable:
        in_use = "no: it has no model yet"
    else:
        in_use = "no"
    return {"port": engine.port, "engine": engine.engine.display, "base_url": engine.base_url,
            "models": list(engine.models), "in_use": in_use,
            "used_as": None if user is None else user["name"],
            "config": None if user is not None and user.get("source") != "discovered"
            else snippet, "config_name": name}


def render_engines(engines: Sequence[FoundEngine], rows: Sequence[Mapping[str, Any]],
                   cfg: DemiConfig) -> str:
    """What runs where on loopback, and the config that keeps each engine."""
    ports = cfg.llm.discover_ports or "the engines' default ports"
    if not engines:
        return f"No engine answers on loopback ({ports})."
    listed = [engine_row(e, rows) for e in engines]
    lines = ["Engines running on this machine:",
             *_table(ENGINE_COLUMNS, [(str(r["port"]), r["engine"],
                                       ", ".join(r["models"]) or "-", r["in_use"])
                                      for r in listed])]
    keep = [r for r in listed if r["config"] is not None]
    if keep:
        lines += ["", "To use them for good, add to your config (one line each, or merge the "
                  "entries into llm.providers):"]
        lines += [f"  {r['config']}" for r in keep]
    if not cfg.llm.discover:
        lines += ["", "llm.discover is off: DEMI does not use engines it was not told about."]
    return "\n".join(lines)


def no_provider_hint(rows: Sequence[Mapping[str, Any]]) -> str:
    """What to do when nothing is usable: start a provider or fix its URL."""
    names = ", ".join(row["display_name"] for row in rows)
    return (
        f"No provider is usable ({names}). Start one (`ollama serve`, or LM Studio's "
        "server) or point --ollama-url / --lmstudio-url at where it runs."
    )
