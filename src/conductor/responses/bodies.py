"""``POST /v1/responses``: the request body, declared once, and its translation onto DEMI's chat.

A Responses request is *translated*, never passed through: its ``input`` items and
``instructions`` become chat messages in OpenAI's chat spelling (the LLM layer then
spells them for each provider kind), its ``tools`` a chat ``tools`` list
(``tools.py``), and its options DEMI's chat options:

================================  ==============================================
Responses                         DEMI's chat
================================  ==============================================
``instructions``                  a ``system`` message first (not carried over by
                                  ``previous_response_id``, as OpenAI's)
``input`` string                  one ``user`` message
``message`` items                 messages; ``developer`` becomes ``system``
``input_text`` / ``output_text``  text (several parts joined with newlines)
``input_image`` (``image_url``)   an ``image_url`` part
``function_call`` items           the assistant message's ``tool_calls``
``function_call_output`` items    ``tool`` messages with ``tool_call_id``
``custom_tool_call[_output]``     the same, the free text as ``{"input": ...}``
``text.format``                   ``response_format`` (``json_object``, ``json_schema``)
``max_output_tokens``             ``max_tokens``
``temperature``, ``top_p``        the same
``reasoning.effort``              ``think`` (Ollama's; other kinds do not take it)
================================  ==============================================

Accepted and dropped: ``store`` and ``metadata`` are DEMI's own business (the store and
the echo), ``include``, ``reasoning.summary``, ``user``, ``prompt_cache_key``,
``client_metadata``, ``safety_identifier``, ``service_tier``, ``truncation``,
``text.verbosity``, ``top_logprobs``, ``max_tool_calls``, ``stream_options`` and any
field this version does not know (a DEBUG line names it), plus ``reasoning`` items in the
input (DEMI never made them, and their encrypted content means nothing to a local model)
and the records of hosted tools' calls. Refused with a 400 naming the field:
``background: true``, ``conversation``, ``prompt`` and ``item_reference`` items (they
need OpenAI's server-side objects), ``input_file`` and ``input_audio`` parts and images
by ``file_id`` (DEMI has no Files API and relays text and images only).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from ..bodies import Flag, ModelName, Number, Object, PositiveInt, RequestBody, Text, expect
from ..http.errors import ApiError
from .tools import CUSTOM_INPUT, ToolTable, build_table, chat_tool_choice

DROPPED_FIELDS = frozenset({
    "include", "user", "prompt_cache_key", "client_metadata", "safety_identifier",
    "service_tier", "top_logprobs", "max_tool_calls", "stream_options",
    "prompt_cache_retention",
})
"""Known fields DEMI accepts and does nothing with (unknown ones are dropped too, logged)."""

HOSTED_ITEMS = frozenset({
    "web_search_call", "file_search_call", "computer_call", "computer_call_output",
    "code_interpreter_call", "image_generation_call", "local_shell_call",
    "local_shell_call_output", "shell_call", "shell_call_output", "apply_patch_call",
    "apply_patch_call_output", "mcp_list_tools", "mcp_approval_request",
    "mcp_approval_response", "mcp_call", "tool_search_call", "tool_search_output",
    "compaction",
})
"""Records of tools that run on OpenAI's servers: never DEMI's, dropped from the history."""

ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
TEXT_PARTS = frozenset({"input_text", "output_text", "text", "summary_text"})
EFFORT_THINK: dict[str, bool | str] = {
    "none": False, "minimal": False, "low": "low", "medium": "medium", "high": "high",
    "xhigh": "high",
}
"""``reasoning.effort`` as Ollama's ``think``: off, or the level it takes."""


def _is_input(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(item, dict) for item in value))


Input = Annotated[
    str | list[dict[str, Any]],
    expect("a string or an array of input items", _is_input),
]
Instructions = Annotated[
    str | list[dict[str, Any]] | None,
    expect("a string or an array of input items", lambda v: v is None or _is_input(v)),
]
ToolList = Annotated[
    list[Any] | None,
    expect("an array of tools", lambda v: v is None or isinstance(v, list)),
]
StringList = Annotated[
    list[str] | None,
    expect("an array of strings",
           lambda v: v is None or (isinstance(v, list) and all(isinstance(s, str) for s in v))),
]


class TextOptions(RequestBody):
    format: Object | None = None
    verbosity: Any = None


class ReasoningOptions(RequestBody):
    effort: Annotated[
        str | None, expect("one of " + ", ".join(EFFORT_THINK),
                           lambda v: v is None or (isinstance(v, str) and v in EFFORT_THINK)),
    ] = None
    summary: Any = None
    generate_summary: Any = None


class ResponsesBody(RequestBody):
    """``POST /v1/responses``."""

    model: ModelName
    input: Input | None = None
    instructions: Instructions = None
    stream: Flag | None = None
    store: Flag | None = None
    previous_response_id: Text | None = None
    tools: ToolList = None
    tool_choice: Any = None
    parallel_tool_calls: Flag | None = None
    text: TextOptions | None = None
    max_output_tokens: PositiveInt | None = None
    temperature: Number | None = None
    top_p: Number | None = None
    reasoning: ReasoningOptions | None = None
    include: StringList = None
    metadata: Object | None = None
    truncation: Annotated[
        str | None, expect('"auto" or "disabled"', lambda v: v in (None, "auto", "disabled")),
    ] = None
    background: Flag | None = None
    conversation: Any = None
    prompt: Any = None

    @property
    def stored(self) -> bool:
        """``store`` defaults to true, as OpenAI's."""
        return self.store is not False

    def check_supported(self) -> None:
        """A 400 for what needs OpenAI's own servers."""
        refusals = (
            ("background", self.background,
             "background responses are not supported: DEMI answers while the request is "
             "open; send it without background"),
            ("conversation", self.conversation is not None,
             "conversations are OpenAI server-side objects DEMI does not have; continue with "
             "previous_response_id instead"),
            ("prompt", self.prompt is not None,
             "prompt templates are stored on OpenAI's servers; send the text as instructions "
             "and input instead"),
        )
        for name, refused, why in refusals:
            if refused:
                raise ApiError(400, f"{name}: {why}", param=name, code="unsupported_parameter")

    def input_items(self) -> list[dict[str, Any]]:
        """``input`` as items (a string is one user message)."""
        if self.input is None:
            if self.previous_response_id is None:
                raise ApiError(400, "input is required: a string or an array of input items",
                               param="input", code="missing_required_parameter")
            return []
        if isinstance(self.input, str):
            return [{"type": "message", "role": "user", "content": self.input}]
        return list(self.input)

    def unknown_fields(self) -> list[str]:
        return sorted(k for k in (self.model_extra or {}) if k not in DROPPED_FIELDS)


@dataclass(frozen=True, slots=True)
class Translation:
    """A Responses request in DEMI's chat terms."""

    messages: list[dict[str, Any]]
    options: dict[str, Any]
    tools: ToolTable
    input: list[dict[str, Any]]
    """This request's input items (what ``previous_response_id`` will carry on)."""


def translate(body: ResponsesBody, history: Sequence[Mapping[str, Any]],
              logger: logging.Logger) -> Translation:
    """``body`` (after the stored ``history`` of its previous response) as a chat request."""
    body.check_supported()
    unknown = body.unknown_fields()
    if unknown:
        logger.debug("Responses: ignored unknown fields %s", ", ".join(unknown))
    table = build_table(body.tools, logger)
    items = body.input_items()
    messages: list[dict[str, Any]] = []
    if isinstance(body.instructions, str):
        if body.instructions:
            messages.append({"role": "system", "content": body.instructions})
    elif body.instructions:
        _append_items(messages, body.instructions, "instructions", table, logger)
    _append_items(messages, history, "previous_response_id", table, logger)
    _append_items(messages, items, "input", table, logger)
    if not messages:
        raise ApiError(400, "input must not be empty: send at least one message",
                       param="input", code="invalid_value")
    return Translation(messages, _options(body, table, logger), table, items)


def _options(body: ResponsesBody, table: ToolTable, logger: logging.Logger) -> dict[str, Any]:
    options: dict[str, Any] = {}
    choice = chat_tool_choice(body.tool_choice, table, logger)
    if table.offered:
        options["tools"] = table.offered
        if choice is not None:
            options["tool_choice"] = choice
        if body.parallel_tool_calls is not None:
            options["parallel_tool_calls"] = body.parallel_tool_calls
    if body.max_output_tokens is not None:
        options["max_tokens"] = body.max_output_tokens
    for key in ("temperature", "top_p"):
        value = getattr(body, key)
        if value is not None:
            options[key] = value
    if body.text is not None and body.text.format is not None:
        fmt = _response_format(body.text.format)
        if fmt is not None:
            options["response_format"] = fmt
    if body.reasoning is not None and body.reasoning.effort is not None:
        options["think"] = EFFORT_THINK[body.reasoning.effort]
    return options


def _response_format(fmt: Mapping[str, Any]) -> dict[str, Any] | None:
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise ApiError(400, "text.format.schema must be an object (a JSON schema)",
                           param="text.format.schema", code="invalid_value")
        name = fmt.get("name", "schema")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "text.format.name must be a non-empty string",
                           param="text.format.name", code="invalid_value")
        spec: dict[str, Any] = {"name": name, "schema": schema}
        if isinstance(fmt.get("strict"), bool):
            spec["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": spec}
    raise ApiError(400, 'text.format.type must be "text", "json_object" or "json_schema"',
                   param="text.format.type", code="invalid_value")


# -- input items -----------------------------------------------------------------------


def _bad(where: str, message: str) -> ApiError:
    return ApiError(400, f"{where} {message}", param=where, code="invalid_value")


def _string(item: Mapping[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise _bad(f"{where}.{key}", "is required: a string")
    return value


def _append_items(out: list[dict[str, Any]], items: Sequence[Mapping[str, Any]], where: str,
                  table: ToolTable, logger: logging.Logger) -> None:
    for i, item in enumerate(items):
        here = f"{where}[{i}]"
        kind = item.get("type")
        if kind is None and "role" in item:
            kind = "message"  # the "easy" message: {"role", "content"}
        if not isinstance(kind, str):
            raise _bad(f"{here}.type", "is required: a string such as \"message\"")
        if kind == "message":
            out.append(_message(item, here))
        elif kind in ("function_call", "custom_tool_call"):
            _append_call(out, item, here, table)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            out.append({"role": "tool", "tool_call_id": _string(item, "call_id", here),
                        "content": _output(item.get("output"), f"{here}.output")})
        elif kind == "reasoning" or kind in HOSTED_ITEMS:
            logger.debug("Responses: dropped %s item %s", kind, here)
        elif kind == "item_reference":
            raise ApiError(400, f"{here}: item_reference needs OpenAI's item store; send the "
                           "item itself, or continue with previous_response_id",
                           param=here, code="unsupported_parameter")
        else:
            raise _bad(f"{here}.type", "must be message, function_call, function_call_output,"
                       f" custom_tool_call or custom_tool_call_output (got {kind!r})")


def _message(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise _bad(f"{where}.role", "must be user, assistant, system or developer")
    return {"role": ROLES[role], "content": _content(item.get("content"), f"{where}.content")}


def _content(content: Any, where: str) -> str | list[dict[str, Any]]:
    """A string, or chat content parts when there is an image (text-only parts joined)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(where, "must be a string or an array of content parts")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        here = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if not isinstance(kind, str):
            raise _bad(f"{here}.type", "is required: input_text, output_text or input_image")
        if kind in TEXT_PARTS:
            parts.append({"type": "text", "text": _string(part, "text", here)})
        elif kind == "refusal":
            parts.append({"type": "text", "text": _string(part, "refusal", here)})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str):
                if part.get("file_id") is not None:
                    raise ApiError(400, f"{here}.file_id: DEMI has no Files API; send the "
                                   "image as image_url (a data: URL)", param=f"{here}.file_id",
                                   code="unsupported_parameter")
                raise _bad(f"{here}.image_url", "is required: a data: or http(s) URL")
            parts.append({"type": "image_url", "image_url": {"url": url}})
        elif kind in ("input_file", "input_audio"):
            raise ApiError(400, f"{here}.type: {kind} parts are not supported; DEMI relays text"
                           " and images", param=f"{here}.type", code="unsupported_parameter")
        else:
            raise _bad(f"{here}.type", "must be input_text, output_text or input_image")
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def _output(output: Any, where: str) -> str | list[dict[str, Any]]:
    """A tool's output: a string, or content parts (text joined; images kept as parts)."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return _content(output, where)
    raise _bad(where, "is required: a string or an array of content parts")


def _append_call(out: list[dict[str, Any]], item: Mapping[str, Any], where: str,
                 table: ToolTable) -> None:
    """A call joins the assistant message before it (a chat turn holds text and calls)."""
    name = _string(item, "name", where)
    namespace = item.get("namespace")
    flat = table.flat_name(name, namespace if isinstance(namespace, str) else None)
    if item.get("type") == "custom_tool_call":
        arguments = json.dumps({CUSTOM_INPUT: _string(item, "input", where)})
    else:
        arguments = _string(item, "arguments", where)
    call = {"id": _string(item, "call_id", where), "type": "function",
            "function": {"name": flat, "arguments": arguments}}
    last = out[-1] if out else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
    else:
        out.append({"role": "assistant", "content": "", "tool_calls": [call]})
