"""Request translation: one conversation, spelled the way each kind of server reads it.

Callers reach DEMI through two faces, so a request arrives in OpenAI's spelling (content
parts, ``image_url`` data URLs, tool-call ``arguments`` as a JSON *string*, ``tool_call_id``,
``response_format``) or Ollama's (``images`` beside ``content``, ``arguments`` as an
*object*, ``tool_name``, ``format``), or a mix. Each provider kind accepts both and writes
its own: :func:`to_ollama` and :func:`to_openai`.

When a request has no equivalent on a server (an image given by http URL for Ollama,
``tool_choice: "required"`` for Ollama, tools or images for the embedded model) the
translation raises :class:`~src.llm.errors.CannotExpress` naming the field: the chain
then tries a provider that can, and nobody's health suffers for it.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import CannotExpress, RequestError
from ..types import ChatRequest, ToolCall

TOP_LEVEL = frozenset({
    "tools", "tool_choice", "parallel_tool_calls", "response_format", "format",
    "keep_alive", "think", "stream_options",
})
"""Request fields that are not sampling options: each kind places them itself."""

OLLAMA_ONLY_OPTIONS = frozenset({"num_ctx", "keep_alive", "think", "num_gpu", "num_thread",
                                 "num_batch", "use_mmap", "numa", "low_vram", "main_gpu"})
"""Load-time and hardware settings of Ollama: an OpenAI-compatible server fixes these when it
loads the model, so they are not sent there (they change how, not what, it answers)."""


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(top-level request fields, sampling options)."""
    top = {k: v for k, v in options.items() if k in TOP_LEVEL}
    rest = {k: v for k, v in options.items() if k not in TOP_LEVEL}
    return top, rest


def wants_tools(options: Mapping[str, Any]) -> bool:
    """True if the model is offered tools it may call (``tool_choice: "none"`` offers none)."""
    return bool(options.get("tools")) and options.get("tool_choice") != "none"


# -- content parts and images -------------------------------------------------------------


def _data_url_payload(url: str, where: str, kind: str) -> str:
    """The base64 payload of a ``data:`` URL; CannotExpress for any other URL."""
    if not url.startswith("data:"):
        raise CannotExpress(where, f"{kind} takes images only as data: URLs")
    head, sep, payload = url.partition(",")
    if not sep or ";base64" not in head:
        raise RequestError(f"{where} must be a base64 data: URL")
    return payload


_CHECK_CHUNK = 64 * 1024
"""Characters of base64 checked at a time (a multiple of 4)."""
def check_base64(value: Any, where: str) -> str:
    """``value`` if it is strict base64 (a 400 otherwise), checked piece by piece so a
    20 MB image is never decoded whole just to be checked."""
    if not isinstance(value, str):
        raise RequestError(f"{where} must be a base64 string")
    if len(value) % 4:
        raise RequestError(f"{where} is not valid base64")
    try:
        for start in range(0, len(value), _CHECK_CHUNK):
            base64.b64decode(value[start:start + _CHECK_CHUNK], validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"{where} is not valid base64") from None
    return value


def data_url(value: Any, where: str) -> str:
    """A base64 image as a ``data:`` URL with its type sniffed from its first bytes (the
    caller's base64 is reused, never decoded whole)."""
    if isinstance(value, str) and value.startswith("data:"):
        value = value.partition(",")[2]
    encoded = check_base64(value, where)
    return f"data:{_mime(base64.b64decode(encoded[:16]))};base64,{encoded}"


def image_bytes(value: Any, where: str) -> bytes:
    """Decoded image data; a caller's bad base64 is a 400 (never a path read from disk)."""
    if not isinstance(value, str):
        raise RequestError(f"{where} must be a base64 string")
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"{where} is not valid base64") from None


def _mime(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data.startswith(b"GIF8"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def _parts(content: Any, where: str, kind: str) -> tuple[str, list[str]]:
    """(joined text, base64 images) of a content value; parts DEMI cannot map raise."""
    if content is None or isinstance(content, str):
        return content or "", []
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(content):
        here = f"{where}[{j}]"
        kind_of = part.get("type") if isinstance(part, Mapping) else None
        if kind_of == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind_of == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, Mapping) else image
            if not isinstance(url, str):
                raise RequestError(f"{here}.image_url.url must be a string")
            payload = _data_url_payload(url, f"{here}.image_url", kind)
            images.append(check_base64(payload, f"{here}.image_url"))
        elif isinstance(kind_of, str):
            raise CannotExpress(f"{here}.type", f"{kind} has no '{kind_of}' content parts")
        else:
            raise RequestError(f"{here} must be an object with a type")
    return "\n".join(texts), images


def _arguments_object(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        try:
            parsed = json.loads(value or "{}")
        except ValueError:
            raise RequestError(f"{where} must be a JSON object") from None
        if isinstance(parsed, dict):
            return parsed
    raise RequestError(f"{where} must be a JSON object")


def _arguments_string(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value or {})


# -- Ollama ----------------------------------------------------------------------------


@dataclass
class OllamaRequest:
    """Keyword arguments for ``ollama.AsyncClient.chat`` (minus model and stream)."""

    messages: list[dict[str, Any]]
    options: dict[str, Any]
    tools: list[Any] | None = None
    format: Any = None
    keep_alive: Any = None
    think: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def to_ollama(request: ChatRequest) -> OllamaRequest:
    """Ollama's spelling of ``request``; its sampling options are left to the caller."""
    top, options = split_options(request.options)
    names: dict[str, str] = {}  # tool-call id -> function name, for tool replies
    out: list[dict[str, Any]] = []
    for i, message in enumerate(request.messages):
        where = f"messages[{i}]"
        text, images = _parts(message.get("content"), f"{where}.content", "Ollama")
        msg: dict[str, Any] = {"role": message["role"], "content": text}
        raw_images = message.get("images")
        if raw_images:
            if not isinstance(raw_images, list):
                raise RequestError(f"{where}.images must be an array of base64 strings")
            images = [*images, *raw_images]
        if images:
            # Bytes: the ollama client reads a string naming an existing file from disk
            # (and parses a long string as a path first, copying it several times).
            msg["images"] = [image_bytes(im, f"{where}.images") for im in images]
        calls = message.get("tool_calls")
        if calls:
            msg["tool_calls"] = []
            for k, call in enumerate(_list(calls, f"{where}.tool_calls")):
                fn = call.get("function") if isinstance(call, Mapping) else None
                if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
                    raise RequestError(f"{where}.tool_calls[{k}].function.name is required")
                if isinstance(call.get("id"), str):
                    names[call["id"]] = fn["name"]
                msg["tool_calls"].append({"function": {
                    "name": fn["name"],
                    "arguments": _arguments_object(
                        fn.get("arguments"), f"{where}.tool_calls[{k}].function.arguments"),
                }})
        if message["role"] == "tool":
            name = message.get("tool_name") or message.get("name") or names.get(
                message.get("tool_call_id") or "")
            if isinstance(name, str):
                msg["tool_name"] = name
        if isinstance(message.get("thinking"), str):
            msg["thinking"] = message["thinking"]
        out.append(msg)
    result = OllamaRequest(messages=out, options=options,
                           keep_alive=top.get("keep_alive"), think=top.get("think"))
    choice = top.get("tool_choice")
    if top.get("tools") and choice != "none":
        if choice not in (None, "auto"):
            raise CannotExpress("tool_choice", "Ollama has no tool_choice other than auto",
                                approximate=True)
        result.tools = list(top["tools"])
    result.format = top.get("format")
    if result.format is None:
        result.format = _ollama_format(top.get("response_format"))
    return result


def _ollama_format(response_format: Any) -> Any:
    if not isinstance(response_format, Mapping):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        return dict(schema) if isinstance(schema, Mapping) else "json"
    return None


def _list(value: Any, where: str) -> Sequence[Any]:
    if not isinstance(value, list):
        raise RequestError(f"{where} must be an array")
    return value


# -- OpenAI-compatible servers ----------------------------------------------------------


def to_openai(request: ChatRequest, *, json_object_as_schema: bool) -> dict[str, Any]:
    """The messages and top-level fields of an OpenAI chat request (no sampling options).

    ``json_object_as_schema``: the server (LM Studio) takes ``json_schema`` only, so JSON
    mode is sent as a schema for "any object".
    """
    top, _ = split_options(request.options)
    ids: dict[str, list[str]] = {}  # function name -> ids not yet answered, for tool_name
    out: list[dict[str, Any]] = []
    for i, message in enumerate(request.messages):
        where = f"messages[{i}]"
        msg = {k: v for k, v in message.items() if k not in ("images", "tool_name", "thinking")}
        raw_images = message.get("images")
        if raw_images:
            parts: list[dict[str, Any]] = []
            content = message.get("content")
            if isinstance(content, list):
                parts.extend(content)
            elif content:
                parts.append({"type": "text", "text": content})
            for im in _list(raw_images, f"{where}.images"):
                parts.append({"type": "image_url",
                              "image_url": {"url": data_url(im, f"{where}.images")}})
            msg["content"] = parts
        calls = message.get("tool_calls")
        if calls:
            fixed = []
            for k, call in enumerate(_list(calls, f"{where}.tool_calls")):
                fn = call.get("function") if isinstance(call, Mapping) else None
                if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
                    raise RequestError(f"{where}.tool_calls[{k}].function.name is required")
                ident = call.get("id") if isinstance(call.get("id"), str) else new_call_id()
                ids.setdefault(fn["name"], []).append(ident)
                fixed.append({"id": ident, "type": "function", "function": {
                    "name": fn["name"], "arguments": _arguments_string(fn.get("arguments"))}})
            msg["tool_calls"] = fixed
            if msg.get("content") == "":
                msg["content"] = None
        if message["role"] == "tool" and not message.get("tool_call_id"):
            name = message.get("tool_name") or message.get("name")
            pending = ids.get(name) if isinstance(name, str) else None
            msg["tool_call_id"] = pending.pop(0) if pending else new_call_id()
        out.append(msg)
    payload: dict[str, Any] = {"messages": out}
    choice = top.get("tool_choice")
    if top.get("tools") and choice != "none":
        payload["tools"] = top["tools"]
        if choice is not None:
            payload["tool_choice"] = choice
        if "parallel_tool_calls" in top:
            payload["parallel_tool_calls"] = top["parallel_tool_calls"]
    response_format = top.get("response_format") or _openai_format(top.get("format"))
    if isinstance(response_format, Mapping):
        if json_object_as_schema and response_format.get("type") == "json_object":
            response_format = {"type": "json_schema", "json_schema": {
                "name": "json_object", "schema": {"type": "object"}}}
        payload["response_format"] = response_format
    return payload


def _openai_format(fmt: Any) -> dict[str, Any] | None:
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, Mapping):
        return {"type": "json_schema", "json_schema": {"name": "schema", "schema": dict(fmt)}}
    return None


def openai_tool_calls(fragments: Mapping[int, dict[str, Any]]) -> tuple[ToolCall, ...]:
    """Whole calls from streamed ``delta.tool_calls`` fragments accumulated by index."""
    return tuple(
        ToolCall(id=f.get("id") or new_call_id(), name=f.get("name") or "",
                 arguments=f.get("arguments") or "{}")
        for _, f in sorted(fragments.items())
    )


def add_fragment(fragments: dict[int, dict[str, Any]], delta_calls: Any) -> bool:
    """Fold one delta's ``tool_calls`` into ``fragments``; False if the shape is wrong."""
    if not isinstance(delta_calls, list):
        return False
    for position, piece in enumerate(delta_calls):
        if not isinstance(piece, dict):
            return False
        index = piece.get("index", position)
        if not isinstance(index, int):
            return False
        slot = fragments.setdefault(index, {})
        if isinstance(piece.get("id"), str):
            slot["id"] = piece["id"]
        fn = piece.get("function") or {}
        if not isinstance(fn, dict):
            return False
        if isinstance(fn.get("name"), str):
            slot["name"] = slot.get("name", "") + fn["name"]
        args = fn.get("arguments")
        if isinstance(args, str):
            slot["arguments"] = slot.get("arguments", "") + args
        elif isinstance(args, dict):
            slot["arguments"] = json.dumps(args)
    return True


def check_text_only(request: ChatRequest, kind: str) -> None:
    """For a model that reads text only: images, tools and non-text parts cannot go there."""
    if wants_tools(request.options):
        raise CannotExpress("tools", f"{kind} cannot call tools")
    for i, message in enumerate(request.messages):
        if message.get("images"):
            raise CannotExpress(f"messages[{i}].images", f"{kind} cannot read images")
        content = message.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not (isinstance(part, Mapping) and part.get("type") == "text"):
                    raise CannotExpress(f"messages[{i}].content[{j}]",
                                        f"{kind} reads text parts only")


def joined_text_parts(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Text-part contents joined into one string, for servers whose templates want strings."""
    return [
        {**m, "content": "\n".join(p["text"] for p in m["content"])}
        if isinstance(m.get("content"), list) else m
        for m in messages
    ]
