"""The Anthropic face's request bodies, and their translation onto DEMI's chat.

``POST /v1/messages`` and ``/v1/messages/count_tokens`` are declared once here
(:class:`MessagesBody`, :class:`CountTokensBody`) with the field types of ``bodies.py``;
a malformed field is a 400 ``invalid_request_error`` naming it. :meth:`CountTokensBody.chat`
turns a body into the messages and options the LLM layer takes, spelled as OpenAI spells
them (the LLM layer writes each provider's own spelling from there):

* ``system`` (a string or text blocks) becomes the first message; a ``role: "system"``
  message inside ``messages`` (Claude Code sends one) stays a system turn where it is;
* text and image blocks become content parts (``image_url`` with a ``data:`` URL, or the
  block's ``url``: a provider that takes images only as data goes to the next one);
* ``tool_use`` blocks become the assistant's ``tool_calls``; ``tool_result`` blocks become
  ``tool`` messages (before whatever else the user turn says), ``is_error`` a leading
  ``Error:``; images inside a result follow in the user turn;
* ``thinking`` blocks become the assistant message's ``thinking`` (Ollama reads it);
* ``tools``/``tool_choice``/``stop_sequences``/sampling fields map one to one, ``thinking``
  to Ollama's ``think`` (see :func:`_think`), a JSON schema in ``output_config.format`` to
  ``response_format``.

Everything else a client sends (``metadata``, ``cache_control`` anywhere,
``context_management``, ``output_config.effort``, beta fields DEMI has never heard of) is
accepted and ignored: it steers Anthropic's service, not what a model says. What DEMI
cannot do is refused with a 400 saying so: server tools, documents other than plain text,
files by id, content block types it does not know.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from ..bodies import (
    Flag,
    ModelName,
    Number,
    PositiveInt,
    RequestBody,
    expect,
    not_empty,
    required,
)
from ..http.errors import ApiError

ROLES = ("user", "assistant", "system")


def _message_object(value: Any) -> Any:
    if not isinstance(value, dict):
        raise PydanticCustomError("wrong_type", "must be {expected}",
                                  {"expected": "an object with role and content"})
    return value


class MessageParam(RequestBody):
    """One turn: ``content`` is a string or an array of content blocks."""

    role: Annotated[str, expect('"user" or "assistant"', lambda v: v in ROLES)]
    content: Annotated[
        str | list[Any],
        expect("a string or an array of content blocks", lambda v: isinstance(v, (str, list))),
    ]


MessageItem = Annotated[MessageParam, BeforeValidator(_message_object)]
Turns = Annotated[
    list[MessageItem],
    not_empty("must not be empty: send at least one message"),
    expect("an array of {role, content} objects", lambda v: isinstance(v, list)),
    required(),
]
System = Annotated[
    str | list[Any] | None,
    expect("a string or an array of text blocks",
           lambda v: v is None or isinstance(v, (str, list))),
]
Stops = Annotated[
    list[str] | None,
    expect("an array of strings",
           lambda v: v is None or (isinstance(v, list) and all(isinstance(s, str) for s in v))),
]
Objects = Annotated[
    list[Any] | None,
    expect("an array of objects",
           lambda v: v is None or (isinstance(v, list) and all(isinstance(t, dict) for t in v))),
]
OptionalObject = Annotated[
    dict[str, Any] | None, expect("an object", lambda v: v is None or isinstance(v, dict)),
]
NonNegativeInt = Annotated[
    int, expect("a non-negative integer", lambda v: isinstance(v, int)
                and not isinstance(v, bool) and v >= 0),
]


def _bad(where: str, message: str) -> ApiError:
    return ApiError(400, f"{where} {message}", param=where, code="invalid_request")


def _string(block: dict[str, Any], key: str, where: str) -> str:
    value = block.get(key)
    if not isinstance(value, str):
        raise _bad(f"{where}.{key}", "must be a string")
    return value


# -- content blocks ----------------------------------------------------------------------


def _image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    """An ``image`` block as an OpenAI ``image_url`` part."""
    source = block.get("source")
    if not isinstance(source, dict):
        raise _bad(f"{where}.source", "must be an object")
    kind = source.get("type")
    if kind == "base64":
        media = _string(source, "media_type", f"{where}.source")
        data = _string(source, "data", f"{where}.source")
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if kind == "url":
        return {"type": "image_url", "image_url": {"url": _string(source, "url",
                                                                  f"{where}.source")}}
    raise _bad(f"{where}.source.type", f"'{kind}' is not supported: send the image as "
               "base64 data or by url (DEMI keeps no files)")


def _document_text(block: dict[str, Any], where: str) -> str:
    """A plain-text ``document`` block's text; other documents are refused."""
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "text":
        return _string(source, "data", f"{where}.source")
    raise _bad(where, "is a document DEMI cannot read: only plain-text documents "
               "(source.type \"text\") are translated; local models read no PDF")


def _text_of(content: Any, where: str) -> str:
    """The text of a string or of an array of text blocks (``system``, system turns)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(where, "must be a string or an array of text blocks")
    texts = []
    for j, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _bad(f"{where}[{j}]", "must be a text block")
        texts.append(_string(block, "text", f"{where}[{j}]"))
    return "\n".join(texts)


def _content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Text parts joined into one string (every server takes that); a list with images."""
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def _tool_result(block: dict[str, Any], where: str,
                 referenced: set[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the ``tool`` message, image parts for the user turn) of a ``tool_result`` block."""
    call_id = _string(block, "tool_use_id", where)
    content = block.get("content")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for k, part in enumerate(content):
            here = f"{where}.content[{k}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                texts.append(_string(part, "text", here))
            elif kind == "image":
                images.append(_image_part(part, here))
            elif kind == "document":
                texts.append(_document_text(part, here))
            elif kind == "tool_reference":
                name = _string(part, "tool_name", here)
                referenced.add(name)
                texts.append(f"Tool {name} is now available.")
            else:
                raise _bad(here, "must be a text, image, document or tool_reference block")
    elif content is not None:
        raise _bad(f"{where}.content", "must be a string or an array of blocks")
    text = "\n".join(texts)
    if block.get("is_error") is True:
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": call_id, "content": text}, images


def _user_turn(content: list[Any], where: str,
               referenced: set[str]) -> list[dict[str, Any]]:
    """A user turn: its tool results as ``tool`` messages first, then the rest, if any."""
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        here = f"{where}[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": _string(block, "text", here)})
        elif kind == "image":
            parts.append(_image_part(block, here))
        elif kind == "document":
            parts.append({"type": "text", "text": _document_text(block, here)})
        elif kind == "tool_result":
            result, images = _tool_result(block, here, referenced)
            results.append(result)
            parts.extend(images)
        else:
            raise _unknown_block(here, kind, "text, image, document and tool_result")
    if parts or not results:
        results.append({"role": "user", "content": _content(parts)})
    return results


def _assistant_turn(content: list[Any], where: str) -> dict[str, Any]:
    """An assistant turn: text, ``tool_calls`` from its ``tool_use`` blocks, ``thinking``."""
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        here = f"{where}[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(_string(block, "text", here))
        elif kind == "tool_use":
            arguments = block.get("input", {})
            if not isinstance(arguments, dict):
                raise _bad(f"{here}.input", "must be an object")
            calls.append({"id": _string(block, "id", here), "type": "function", "function": {
                "name": _string(block, "name", here), "arguments": json.dumps(arguments)}})
        elif kind == "thinking":
            thoughts.append(_string(block, "thinking", here))
        elif kind == "redacted_thinking":
            continue  # encrypted for Anthropic's models: nothing another model can read
        else:
            raise _unknown_block(here, kind, "text, tool_use and thinking")
    message: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts)}
    if calls:
        message["tool_calls"] = calls
    if thoughts:
        message["thinking"] = "\n".join(thoughts)
    return message


def _unknown_block(where: str, kind: Any, known: str) -> ApiError:
    if not isinstance(kind, str):
        return _bad(where, "must be a content block object with a type")
    return _bad(f"{where}.type", f"'{kind}' is not supported here: DEMI translates {known} "
                "blocks (server tools and their results run on Anthropic's servers only)")


def _messages(turns: list[MessageParam], system: Any) -> tuple[list[dict[str, Any]], set[str]]:
    """DEMI's messages, and the tools a ``tool_reference`` brought into the conversation."""
    out: list[dict[str, Any]] = []
    referenced: set[str] = set()
    if system is not None:
        text = _text_of(system, "system")
        if text:
            out.append({"role": "system", "content": text})
    for i, turn in enumerate(turns):
        where = f"messages[{i}].content"
        if turn.role == "system":
            out.append({"role": "system", "content": _text_of(turn.content, where)})
        elif isinstance(turn.content, str):
            out.append({"role": turn.role, "content": turn.content})
        elif turn.role == "user":
            out.extend(_user_turn(turn.content, where, referenced))
        else:
            out.append(_assistant_turn(turn.content, where))
    return out, referenced


# -- tools and options --------------------------------------------------------------------


def _tools(tools: list[dict[str, Any]], referenced: set[str]) -> list[dict[str, Any]]:
    """Anthropic's client tools as OpenAI function tools.

    A tool with ``defer_loading`` is left out until a ``tool_reference`` in a tool result
    names it (Anthropic's tool search keeps such tools out of the model's context too).
    """
    out = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise _bad(f"{where}.type", f"'{kind}' is one of Anthropic's server tools, which "
                       "run on Anthropic's servers: DEMI serves client tools (name, "
                       "description, input_schema) only")
        name = _string(tool, "name", where)
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise _bad(f"{where}.input_schema", "must be a JSON schema object")
        if tool.get("defer_loading") is True and name not in referenced:
            continue
        function: dict[str, Any] = {"name": name, "parameters": schema}
        description = tool.get("description")
        if isinstance(description, str):
            function["description"] = description
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: dict[str, Any]) -> tuple[Any, bool | None]:
    """(OpenAI's ``tool_choice``, ``parallel_tool_calls`` or None) for Anthropic's."""
    kind = choice.get("type")
    parallel = False if choice.get("disable_parallel_tool_use") is True else None
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", None
    if kind == "tool":
        name = _string(choice, "name", "tool_choice")
        return {"type": "function", "function": {"name": name}}, parallel
    raise _bad("tool_choice.type", "must be \"auto\", \"any\", \"tool\" or \"none\"")


def _think(thinking: dict[str, Any]) -> bool | None:
    """Ollama's ``think`` for Anthropic's ``thinking``, or None to leave the model's default.

    ``enabled`` asks for thinking and ``disabled`` for none. ``adaptive`` ("the model
    decides", what Claude Code sends) is the model's own default, so nothing is sent: a
    model that cannot think is not asked to, and one that thinks by default still does.
    """
    kind = thinking.get("type")
    if kind == "enabled":
        return True
    if kind == "disabled":
        return False
    return None


def _response_format(spec: Any, where: str) -> dict[str, Any] | None:
    """``{"type": "json_schema", "schema": ...}`` as OpenAI's ``response_format``."""
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.get("type") != "json_schema" or not isinstance(
            spec.get("schema"), dict):
        raise _bad(where, 'must be {"type": "json_schema", "schema": {...}}')
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": spec["schema"]}}


class CountTokensBody(RequestBody):
    """``POST /v1/messages/count_tokens``: the prompt part of a Messages request."""

    model: ModelName
    messages: Turns
    system: System = None
    tools: Objects = None
    tool_choice: OptionalObject = None
    thinking: OptionalObject = None
    output_config: OptionalObject = None
    output_format: OptionalObject = None

    def chat(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """(DEMI's messages, the LLM options) for this body."""
        messages, referenced = _messages(self.messages, self.system)
        options: dict[str, Any] = {}
        tools = _tools(self.tools or [], referenced)
        if tools:
            options["tools"] = tools
            if self.tool_choice is not None:
                options["tool_choice"], parallel = _tool_choice(self.tool_choice)
                if parallel is not None:
                    options["parallel_tool_calls"] = parallel
        think = _think(self.thinking) if self.thinking is not None else None
        if think is not None:
            options["think"] = think
        fmt = _response_format((self.output_config or {}).get("format"), "output_config.format")
        fmt = fmt or _response_format(self.output_format, "output_format")
        if fmt is not None:
            options["response_format"] = fmt
        return messages, options


class MessagesBody(CountTokensBody):
    """``POST /v1/messages``: ``max_tokens`` is required, as Anthropic requires it."""

    max_tokens: PositiveInt
    stream: Flag | None = None
    stop_sequences: Stops = None
    temperature: Number | None = None
    top_p: Number | None = None
    top_k: NonNegativeInt | None = None
    metadata: Any = None

    def chat(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        messages, options = super().chat()
        options["max_tokens"] = self.max_tokens
        if self.stop_sequences:
            options["stop"] = list(self.stop_sequences)
        for key in ("temperature", "top_p", "top_k"):
            value = getattr(self, key)
            if value is not None:
                options[key] = value
        return messages, options

