"""What the fake servers answer beyond plain text: tool calls, JSON mode, embeddings.

Like the real servers, and deterministic so tests can assert exact values:

* offered ``tools`` (and not ``tool_choice: "none"``), the model calls one: the named one
  for a named ``tool_choice``, else the first; its arguments fill the schema's required
  properties with fixed values (``"Paris"``, ``1``, ``true``). Once the turn carries a
  ``tool`` result (one after the last assistant message, even with the user's text after
  it, as agents send) it answers with text again, so a round trip ends and an agent
  offered tools on every turn does not loop.
* asked for JSON (Ollama ``format``, OpenAI ``response_format``) the text is a JSON object:
  the schema's properties filled as above, or ``{"reply": <the usual reply>}``.
* embeddings are ``dims`` numbers derived from the text's hash (same text, same vector).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

_VALUES = {"string": "Paris", "integer": 1, "number": 1.5, "boolean": True,
           "array": [], "object": {}}


def fill_schema(schema: Any) -> dict[str, Any]:
    """An object with every required (else every) property of ``schema`` filled."""
    if not isinstance(schema, dict):
        return {}
    props = schema.get("properties")
    if not isinstance(props, dict):
        return {}
    required = schema.get("required")
    names: list[Any] = required if isinstance(required, list) else list(props)
    out: dict[str, Any] = {}
    for name in names:
        found = props.get(name)
        spec: dict[str, Any] = found if isinstance(found, dict) else {}
        if isinstance(spec.get("enum"), list) and spec["enum"]:
            out[name] = spec["enum"][0]
        else:
            out[name] = _VALUES.get(str(spec.get("type")), "Paris")
    return out


TOOL_CALL_MODES = ("per_turn", "once")
"""When the fake calls a tool it is offered: ``per_turn`` on every turn that carries no tool
result yet; ``once`` only while the whole conversation carries none (one round per
conversation: an agent that starts new turns by itself, as Claude Code does when a
background task reports back, gets text from then on)."""


def tool_call(body: dict[str, Any], mode: str = "per_turn") -> tuple[str, dict[str, Any]] | None:
    """(function name, arguments) the fake model calls, or None for a text answer."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or not tools or choice == "none":
        return None
    messages = body.get("messages")
    if _turn_has_tool_result(messages) or (mode == "once" and _has_tool_result(messages)):
        return None
    functions = [t["function"] for t in tools
                 if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    if not functions:
        return None
    chosen = functions[0]
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        chosen = next((f for f in functions if f.get("name") == wanted), chosen)
    return str(chosen.get("name", "")), fill_schema(chosen.get("parameters"))


def _turn_has_tool_result(messages: Any) -> bool:
    """Whether a ``tool`` message follows the last assistant message."""
    if not isinstance(messages, list):
        return False
    for message in reversed(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "assistant":
            return False
        if role == "tool":
            return True
    return False


def _has_tool_result(messages: Any) -> bool:
    """Whether any ``tool`` message is in the conversation."""
    return isinstance(messages, list) and any(
        isinstance(m, dict) and m.get("role") == "tool" for m in messages)


def json_text(schema: Any, reply: str) -> str:
    """The reply in JSON mode: the schema filled, or the usual reply wrapped."""
    if isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
        return json.dumps(fill_schema(schema))
    return json.dumps({"reply": reply})


def ollama_schema(body: dict[str, Any]) -> Any:
    """``format``: None (text), "json", or a schema."""
    fmt = body.get("format")
    return fmt if fmt == "json" or isinstance(fmt, dict) else None


def openai_schema(body: dict[str, Any]) -> Any:
    """``response_format``: None (text), "json", or a schema."""
    rf = body.get("response_format")
    if not isinstance(rf, dict):
        return None
    if rf.get("type") == "json_object":
        return "json"
    if rf.get("type") == "json_schema":
        spec = rf.get("json_schema")
        return spec.get("schema", "json") if isinstance(spec, dict) else "json"
    return None


def embedding(text: str, dims: int = 8) -> list[float]:
    """A deterministic unit-range vector for ``text``."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255, 6) for b in digest[:dims]]
