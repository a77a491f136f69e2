"""Reading request bodies and checking their fields, with errors that say what is wrong.

Everything here raises :class:`~src.conductor.errors.ApiError` (a 4xx) for bad input, so
a handler can read a body and its fields in a few lines and never crash on garbage:
invalid JSON, a body over ``conductor.max_body_bytes``, JSON nested deeply enough to
exhaust the parser, a field of the wrong type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .errors import ApiError, body_too_large


async def read_json_object(request: web.Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object; 413 past ``limit`` bytes, 400 for anything not an object."""
    length = request.content_length
    if length is not None and length > limit:
        raise body_too_large(limit)
    try:
        raw = await request.read()  # the app's client_max_size enforces ``limit`` on chunked bodies
    except web.HTTPRequestEntityTooLarge:
        raise body_too_large(limit) from None
    if not raw:
        raise ApiError(400, "the request body is empty: send a JSON object",
                       code="invalid_json")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and undecodable bytes; RecursionError absurd nesting.
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise ApiError(400, f"the request body is not valid JSON ({detail})",
                       code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the request body must be a JSON object, not {_kind(data)}",
                       code="invalid_json")
    return data


def _kind(value: Any) -> str:
    """A JSON type name for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def wrong_type(name: str, expected: str, value: Any) -> ApiError:
    return ApiError(400, f"{name} must be {expected}, not {_kind(value)}", param=name,
                    code="invalid_type")


def optional_bool(body: Mapping[str, Any], name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise wrong_type(name, "true or false", value)
    return value


def optional_number(value: Any, name: str) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise wrong_type(name, "a number", value)
    return value


def optional_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise wrong_type(name, "an integer", value)
    return value


def optional_object(value: Any, name: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise wrong_type(name, "an object", value)
    return value


def required_model(body: Mapping[str, Any]) -> str:
    """The ``model`` field: present and a non-empty string, else 400 ``model is required``."""
    model = body.get("model")
    if model is None or model == "":
        raise ApiError(400, "model is required", param="model",
                       code="missing_required_parameter")
    if not isinstance(model, str):
        raise wrong_type("model", "a string", model)
    return model


def required_messages(body: Mapping[str, Any]) -> list[Any]:
    """The ``messages`` field: a non-empty array (each message is checked by the LLM layer)."""
    messages = body.get("messages")
    if messages is None:
        raise ApiError(400, "messages is required: send at least one {role, content} message",
                       param="messages", code="missing_required_parameter")
    if not isinstance(messages, list):
        raise wrong_type("messages", "an array of {role, content} objects", messages)
    if not messages:
        raise ApiError(400, "messages must not be empty: send at least one message",
                       param="messages", code="invalid_value")
    return messages


def reject_tools(value: Any) -> None:
    """DEMI relays text only; a request that needs tool calls must not get a silent answer."""
    if value:
        raise ApiError(400, "tools are not supported by DEMI: send the request without tools",
                       param="tools", code="unsupported_parameter")
