"""Reading request bodies, and the field types both faces declare their bodies with.

Each face declares its request bodies once, as pydantic models (``openai_bodies.py``,
``ollama_bodies.py``) built from the field types below, and reads a body with
:func:`parse_body`. Everything here raises :class:`~src.conductor.errors.ApiError` (a
4xx) for bad input, naming the field: invalid JSON, a body over
``conductor.max_body_bytes``, JSON nested deeply enough to exhaust the parser, a field of
the wrong type (a role that is an object, a content that is a number), a number that is
NaN or infinite anywhere in the body.

The field types check JSON types strictly (``true`` is not a number, ``"5"`` is not an
integer) and raise one error kind, ``wrong_type``, whose context says what was expected;
:func:`_describe` turns the first error into "<field> must be <expected>, not <what came>".
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from .http.errors import ApiError, body_too_large

# -- reading ----------------------------------------------------------------------------


async def read_body(request: web.Request, limit: int) -> bytearray:
    """The raw body, read once into one buffer; 413 as soon as it passes ``limit`` bytes.

    Not ``request.read()``: that keeps a second, cached copy of the body for the whole
    request, and a 50 MB image would then cost DEMI its size three times over.
    """
    length = request.content_length
    if length is not None and length > limit:
        raise body_too_large(limit)
    buf = bytearray()
    async for chunk in request.content.iter_any():
        buf += chunk
        if len(buf) > limit:
            raise body_too_large(limit)
    return buf


async def read_json_object(request: web.Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object; 413 past ``limit`` bytes, 400 for anything not an object."""
    return json_object(await read_body(request, limit))


def json_object(raw: bytes | bytearray) -> dict[str, Any]:
    """``raw`` parsed as a JSON object, else a 400 saying what is wrong.

    orjson parses the bytes as they are (the standard library would first decode the whole
    body to a ``str``), so once parsed the body's text exists once, in the values.
    """
    if not raw:
        raise ApiError(400, "the request body is empty: send a JSON object",
                       code="invalid_json")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = _strict_loads(raw)  # NaN, integers past 64 bits, or the standard wording
    if not isinstance(data, dict):
        raise ApiError(400, f"the request body must be a JSON object, not {_kind(data)}",
                       code="invalid_json")
    return data


def _strict_loads(raw: bytes | bytearray) -> Any:
    """The standard library's parse, for what orjson refuses: ``NaN`` (Python's json
    writes it; the field is then named by :func:`check_finite`), integers past 64 bits, and
    for its error messages."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and undecodable bytes; RecursionError absurd nesting.
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise ApiError(400, f"the request body is not valid JSON ({detail})",
                       code="invalid_json") from None


Body = TypeVar("Body", bound=BaseModel)


async def parse_body(request: web.Request, limit: int, model: type[Body]) -> Body:
    """Read the body and validate it as ``model``; ApiError 400 naming the first bad field."""
    return validate(await read_json_object(request, limit), model)


def validate(data: dict[str, Any], model: type[Body]) -> Body:
    try:
        body = model.model_validate(data)
    except ValidationError as exc:
        raise _describe(exc) from None
    if body.model_extra:
        for key, value in body.model_extra.items():
            check_finite(value, key)
    return body


# -- error wording -----------------------------------------------------------------------


def _kind(value: Any) -> str:
    """A JSON type name for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
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


def _field_name(loc: tuple[int | str, ...]) -> str:
    """``("messages", 0, "role")`` → ``messages[0].role``."""
    name = ""
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else part
    return name


_REQUIRED_HINTS = {"messages": ": send at least one {role, content} message"}


def _describe(exc: ValidationError) -> ApiError:
    err = exc.errors(include_url=False)[0]
    name = _field_name(err["loc"])
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return ApiError(400, f"{name} is required" + _REQUIRED_HINTS.get(name, ""),
                        param=name, code="missing_required_parameter")
    if kind == "wrong_type":
        return wrong_type(name, ctx["expected"], err["input"])
    if kind == "invalid_value":
        name += ctx.get("at", "")  # a place inside the field (an item of a list)
        return ApiError(400, f"{name} {ctx['rule']}", param=name, code="invalid_value")
    if kind == "model_type":  # a nested object given as something else
        return wrong_type(name, "an object", err["input"])
    # Only the custom types above are used; anything else still names the field.
    return ApiError(400, f"{name}: {err['msg']}", param=name, code="invalid_value")


# -- field types -------------------------------------------------------------------------


def expect(expected: str, ok: Callable[[Any], bool]) -> BeforeValidator:
    def check(value: Any) -> Any:
        if not ok(value):
            raise PydanticCustomError("wrong_type", "must be {expected}", {"expected": expected})
        return value

    return BeforeValidator(check)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and (not isinstance(value, float) or math.isfinite(value)))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_int(value: Any) -> bool:
    return _is_int(value) and value >= 1


def _is_stop(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(s, str) for s in value)
    )


def required() -> BeforeValidator:
    """``null`` counts as absent: "<field> is required"."""

    def check(value: Any) -> Any:
        if value is None:
            raise PydanticCustomError("missing", "required")
        return value

    return BeforeValidator(check)


def not_empty(rule: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        if value == "" or value == []:
            raise PydanticCustomError("invalid_value", "{rule}", {"rule": rule})
        return value

    return BeforeValidator(check)


Text = Annotated[str, expect("a string", lambda v: isinstance(v, str))]
Flag = Annotated[bool, expect("true or false", lambda v: isinstance(v, bool))]
Int = Annotated[int, expect("an integer", _is_int)]
PositiveInt = Annotated[int, expect("a positive integer", _is_positive_int)]
Number = Annotated[float, expect("a number", _is_number)]
Stop = Annotated[str | list[str], expect("a string or a list of strings", _is_stop)]
def _is_token_ids(value: Any) -> bool:
    """An array of integers, or of arrays of integers: pre-tokenized input."""
    if not isinstance(value, list) or not value:
        return False
    first = value[0]
    items = first if isinstance(first, list) else value
    return bool(items) and all(_is_int(t) for t in items)


def _no_token_ids() -> BeforeValidator:
    def check(value: Any) -> Any:
        if _is_token_ids(value):
            raise PydanticCustomError("invalid_value", "{rule}", {"rule": (
                "is token ids, which DEMI does not accept: it takes text only, because each "
                "server behind it tokenizes with a vocabulary of its own; send strings "
                "(langchain-openai's OpenAIEmbeddings sends token ids unless it is created "
                "with check_embedding_ctx_length=False)")})
        return value

    return BeforeValidator(check)


Inputs = Annotated[
    str | list[str],
    not_empty("must not be empty: send the text to embed"),
    expect("a string or an array of strings",
           lambda v: isinstance(v, str) or (isinstance(v, list)
                                            and all(isinstance(s, str) for s in v))),
    _no_token_ids(),
    required(),
]
Prompt = Annotated[
    str, not_empty("must not be empty"), expect("a string", lambda v: isinstance(v, str)),
    required(),
]
def _is_tools(value: Any) -> bool:
    return value is None or (isinstance(value, list) and all(
        isinstance(t, dict) and t.get("type", "function") == "function"
        and isinstance(t.get("function"), dict) and isinstance(t["function"].get("name"), str)
        for t in value
    ))


def _function_tools_only(value: Any) -> Any:
    """A tool of another kind (OpenAI's ``custom`` tools) is named, with its index."""
    if isinstance(value, list):
        for i, tool in enumerate(value):
            kind = tool.get("type", "function") if isinstance(tool, dict) else "function"
            if kind != "function":
                what = ("custom tools (free-form text input) are" if kind == "custom"
                        else f"tools of type {kind!r} are")
                raise PydanticCustomError("invalid_value", "{rule}", {"at": f"[{i}].type", "rule": (
                    f"is {kind!r}: {what} not supported, because the servers behind DEMI "
                    "take function tools only; send {\"type\": \"function\", ...}")})
    return value


Tools = Annotated[
    list[Any] | None,
    expect('an array of {"type": "function", "function": {"name": ..., "parameters": ...}}',
           _is_tools),
    BeforeValidator(_function_tools_only),
]
Object = Annotated[dict[str, Any], expect("an object", lambda v: isinstance(v, dict))]
Content = Annotated[
    str | list[Any] | None,
    expect("a string or an array of content parts",
            lambda v: v is None or isinstance(v, (str, list))),
]


class RequestBody(BaseModel):
    """Base of every request body: unknown fields are kept (``model_extra``) and passed on."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False,
                              hide_input_in_errors=False)


def _message_object(value: Any) -> Any:
    if not isinstance(value, dict):
        raise PydanticCustomError("wrong_type", "must be {expected}",
                                  {"expected": "an object with role and content"})
    return value


ROLES = ("system", "user", "assistant", "tool", "developer")


def _role(value: Any) -> Any:
    if value == "function":
        raise PydanticCustomError("invalid_value", "{rule}", {"rule": (
            "is 'function', OpenAI's deprecated role for function results, which DEMI does "
            "not take: send the result as a role 'tool' message with the call's "
            "tool_call_id")})
    if isinstance(value, str) and value not in ROLES:
        raise PydanticCustomError("invalid_value", "{rule}", {"rule": (
            f"is {value!r}: use one of {', '.join(ROLES)}")})
    return value


class Message(RequestBody):
    """One chat message: a known role (``developer`` is OpenAI's newer ``system``)."""

    role: Annotated[Text, BeforeValidator(_role)]
    content: Content = None

    def as_dict(self) -> dict[str, Any]:
        """The message as the LLM layer takes it: the fields the caller sent, extras included."""
        return self.model_dump(exclude_unset=True)


MessageItem = Annotated[Message, BeforeValidator(_message_object)]
# Before-validators run right to left: null first, then the type, then emptiness.
Messages = Annotated[
    list[MessageItem],
    not_empty("must not be empty: send at least one message"),
    expect("an array of {role, content} objects", lambda v: isinstance(v, list)),
    required(),
]
ModelName = Annotated[
    str, expect("a string", lambda v: isinstance(v, str)), not_empty("is required"),
    required(),
]


RESERVED = frozenset({"model", "messages", "workload", "prompt", "input"})
"""Names the LLM layer reads as its own arguments (the model per provider, the workload for
routing): an unknown field so named is the caller's typo or mischief, not a sampling option."""


def pass_through(extra: dict[str, Any] | None, ignored: frozenset[str] = frozenset()) -> dict[
        str, Any]:
    """Unknown fields that go on to the provider as options."""
    return {k: v for k, v in (extra or {}).items()
            if v is not None and k not in ignored and k not in RESERVED}


def check_finite(value: Any, name: str) -> None:
    """Reject NaN and infinities anywhere in a pass-through value (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise wrong_type(name, "a finite number", value)
    if isinstance(value, dict):
        for key, item in value.items():
            check_finite(item, f"{name}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_finite(item, f"{name}[{i}]")

