"""The tools of a Responses request, offered to a chat model, and its calls mapped back.

The Responses API has three kinds of tools a chat model can be offered, and several it
cannot:

* ``function`` tools become chat function tools under their own name;
* ``namespace`` tools hold nested function (or custom) tools, called back as
  ``{"name": <nested name>, "namespace": <namespace>}``. A chat model has no namespaces,
  so each nested tool is offered under a flat name (``<namespace>__<name>``, made unique
  and kept within the 64 characters OpenAI allows), and :class:`ToolTable` maps a call to
  that name back to the exact (namespace, name) pair;
* ``custom`` tools take free text instead of JSON arguments: offered as a function with
  one string parameter, ``input``, and answered as ``custom_tool_call`` items;
* hosted tools (``web_search``, ``file_search``, ``computer_use_preview``,
  ``code_interpreter``, ``image_generation``, ``mcp``, ``local_shell`` ...) run on
  OpenAI's servers, which DEMI is not: they are dropped with a DEBUG line, never a 400,
  so an agent that always offers them (Codex offers ``web_search``) still gets answers.

The table is built once per request from its ``tools`` and used both ways: to spell the
calls already in the conversation (history items name (namespace, name)) and to spell the
model's new calls as items.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..http.errors import ApiError

MAX_NAME = 64
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]")
CUSTOM_INPUT = "input"
"""The one parameter a custom tool is offered with: the free text it takes."""


@dataclass(frozen=True, slots=True)
class OfferedTool:
    """What a flat chat function name stands for in the Responses request."""

    kind: Literal["function", "custom"]
    name: str
    namespace: str | None = None


def _bad(where: str, message: str) -> ApiError:
    return ApiError(400, f"{where} {message}", param=where, code="invalid_value")


class ToolTable:
    """Flat chat names ⇄ the request's (kind, namespace, name), and the chat ``tools``."""

    def __init__(self) -> None:
        self.offered: list[dict[str, Any]] = []
        """The chat ``tools`` (OpenAI's ``{"type": "function", "function": {...}}``)."""
        self._by_flat: dict[str, OfferedTool] = {}
        self._flat: dict[tuple[str | None, str], str] = {}

    # -- building ------------------------------------------------------------------------

    def _reserve(self, tool: OfferedTool) -> str:
        if tool.namespace is None:
            flat = tool.name  # a top-level name is offered as it is: it must come back exactly
        else:
            flat = _NOT_NAME.sub("_", f"{tool.namespace}__{tool.name}")[:MAX_NAME]
            n = 2
            while flat in self._by_flat:
                suffix = f"_{n}"
                flat = flat[: MAX_NAME - len(suffix)] + suffix
                n += 1
        self._by_flat[flat] = tool
        self._flat[(tool.namespace, tool.name)] = flat
        return flat

    def _offer(self, spec: Mapping[str, Any], flat: str, tool: OfferedTool,
               namespace_description: str | None) -> None:
        description = spec.get("description")
        if namespace_description and isinstance(description, str):
            description = f"{namespace_description}\n{description}"
        elif namespace_description:
            description = namespace_description
        if tool.kind == "custom":
            hint = "The whole input, as free text"
            fmt = spec.get("format")
            if isinstance(fmt, Mapping) and isinstance(fmt.get("definition"), str):
                hint += f", following this {fmt.get('syntax', 'grammar')} grammar:\n" + fmt[
                    "definition"]
            parameters: Any = {"type": "object", "required": [CUSTOM_INPUT], "properties": {
                CUSTOM_INPUT: {"type": "string", "description": hint}}}
        else:
            parameters = spec.get("parameters")
            if parameters is None:
                parameters = {"type": "object", "properties": {}}
        function: dict[str, Any] = {"name": flat, "parameters": parameters}
        if isinstance(description, str):
            function["description"] = description
        if spec.get("strict") is True:
            function["strict"] = True
        self.offered.append({"type": "function", "function": function})

    # -- reading -------------------------------------------------------------------------

    def flat_name(self, name: str, namespace: str | None) -> str:
        """The chat name of a call already in the conversation."""
        flat = self._flat.get((namespace, name))
        if flat is not None:
            return flat
        if namespace is None:
            return name
        # A tool this request no longer offers: the same spelling a fresh offer would get.
        return _NOT_NAME.sub("_", f"{namespace}__{name}")[:MAX_NAME]

    def called(self, flat: str) -> OfferedTool:
        """What the model's call to ``flat`` is in the Responses request (a name DEMI did
        not offer comes back as a plain function call under that name)."""
        return self._by_flat.get(flat) or OfferedTool("function", flat)

    def __contains__(self, flat: object) -> bool:
        return flat in self._by_flat


def _tool_kind(tool: Any, where: str) -> str:
    if not isinstance(tool, Mapping):
        raise ApiError(400, f"{where} must be an object with a type, not {type(tool).__name__}",
                       param=where, code="invalid_type")
    kind = tool.get("type")
    if not isinstance(kind, str):
        raise _bad(f"{where}.type", "is required: a string such as \"function\"")
    return kind


def _tool_name(tool: Mapping[str, Any], where: str) -> str:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"{where}.name", "is required: the name the model calls the tool by")
    return name


def _kind_of(kind: str) -> Literal["function", "custom"]:
    return "custom" if kind == "custom" else "function"


def build_table(tools: Sequence[Any] | None, logger: logging.Logger) -> ToolTable:
    """The table for a request's ``tools`` (hosted tools dropped, logged at DEBUG)."""
    table = ToolTable()
    if not tools:
        return table
    entries: list[tuple[Mapping[str, Any], OfferedTool, str | None]] = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        kind = _tool_kind(tool, where)
        if kind in ("function", "custom"):
            entries.append((tool, OfferedTool(_kind_of(kind), _tool_name(tool, where)), None))
        elif kind == "namespace":
            namespace = _tool_name(tool, where)
            nested = tool.get("tools")
            if not isinstance(nested, list):
                raise _bad(f"{where}.tools", "must be an array of function tools")
            description = tool.get("description")
            for j, inner in enumerate(nested):
                here = f"{where}.tools[{j}]"
                inner_kind = _tool_kind(inner, here)
                if inner_kind not in ("function", "custom"):
                    logger.debug("Responses: dropped %s tool %s in namespace %s (DEMI cannot "
                                 "run it)", inner_kind, here, namespace)
                    continue
                offered = OfferedTool(_kind_of(inner_kind), _tool_name(inner, here), namespace)
                entries.append((inner, offered,
                                description if isinstance(description, str) else None))
        else:
            logger.debug("Responses: dropped hosted tool %s (%s): it runs on OpenAI's servers,"
                         " not on a local model", where, kind)
    # Top-level names first, so a flattened namespaced name never takes one of theirs.
    flats: dict[int, str] = {}
    for top_level in (True, False):
        for k, (_, tool, _) in enumerate(entries):
            if (tool.namespace is None) == top_level:
                flats[k] = table._reserve(tool)
    for k, (spec, tool, description) in enumerate(entries):
        table._offer(spec, flats[k], tool, description)
    return table


def chat_tool_choice(choice: Any, table: ToolTable, logger: logging.Logger) -> Any:
    """``tool_choice`` in chat spelling (None: not sent)."""
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if not isinstance(choice, Mapping) or not isinstance(choice.get("type"), str):
        raise ApiError(400, 'tool_choice must be "auto", "none", "required" or an object '
                       "with a type", param="tool_choice", code="invalid_value")
    kind = choice["type"]
    if kind in ("function", "custom"):
        name = choice.get("name")
        if not isinstance(name, str):
            raise _bad("tool_choice.name", "is required: the tool the model must call")
        namespace = choice.get("namespace")
        flat = table.flat_name(name, namespace if isinstance(namespace, str) else None)
        return {"type": "function", "function": {"name": flat}}
    if kind == "allowed_tools":
        allowed = choice.get("tools")
        if not isinstance(allowed, list):
            raise _bad("tool_choice.tools", "must be an array of tools")
        keep = set()
        for item in allowed:
            if isinstance(item, Mapping) and isinstance(item.get("name"), str):
                ns = item.get("namespace")
                keep.add(table.flat_name(item["name"], ns if isinstance(ns, str) else None))
        table.offered = [t for t in table.offered if t["function"]["name"] in keep]
        mode = choice.get("mode", "auto")
        return mode if mode in ("auto", "required") else "auto"
    # A hosted tool (web_search, file_search, ...) was asked for: it is not offered.
    logger.debug("Responses: tool_choice %s names a hosted tool DEMI dropped; using auto", kind)
    return "auto"


def call_arguments(tool: OfferedTool, arguments: str) -> str:
    """A custom tool's free text out of the ``{"input": ...}`` arguments it was called with."""
    if tool.kind != "custom":
        return arguments
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        return arguments
    value = parsed.get(CUSTOM_INPUT) if isinstance(parsed, dict) else None
    return value if isinstance(value, str) else arguments
