"""The Anthropic face's encoders: typed chunks from the LLM layer in, Anthropic's bytes out.

* :class:`AnthropicSSE`    the Messages stream: ``message_start``, ``ping``, content blocks
                           (``text`` as ``text_delta``s, then each ``tool_use`` with its
                           input in one ``input_json_delta``), ``message_delta``,
                           ``message_stop``; an ``error`` event when a reply breaks;
* :func:`anthropic_json`   one ``message`` object.

The LLM layer hands tool calls over whole, on the last chunk, so a ``tool_use`` block
follows the text block; its ``partial_json`` is the whole input at once (clients join
fragments, and one is a fragment).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ...llm import ChatChunk, ToolCall
from ..http.errors import ApiError, anthropic_error_body
from ..relay import Collected

SSE_TYPE = "text/event-stream"
_dumps = json.JSONEncoder(separators=(",", ":")).encode
_logger = logging.getLogger("demi.conductor")

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def stop_reason(finish_reason: str | None) -> str:
    """Anthropic's ``stop_reason`` for DEMI's finish reason.

    ``stop_sequence`` is never reported: Ollama and OpenAI-compatible servers end a reply
    cut by a stop sequence with the same ``stop`` as a finished one.
    """
    return STOP_REASONS.get(finish_reason or "stop", "end_turn")


def tool_input(call: ToolCall) -> dict[str, Any]:
    """A call's arguments as the object Anthropic's ``tool_use.input`` is.

    A model that wrote arguments which are not a JSON object gets ``{}`` (the client's
    tool then says what is missing) and a WARNING that names the tool, not the text.
    """
    try:
        value = json.loads(call.arguments or "{}")
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value
    _logger.warning("The model's arguments for tool %s are not a JSON object; sent as {}",
                    call.name)
    return {}


def _event(name: str, data: str) -> str:
    return f"event: {name}\ndata: {data}\n\n"


class AnthropicSSE:
    """One Messages stream; the same message ``id`` from ``message_start`` to the end."""

    content_type = SSE_TYPE
    served_by: tuple[str, ...] = ()

    def __init__(self, message_id: str, model: str, input_tokens: int) -> None:
        message: dict[str, Any] = {
            "id": message_id, "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 0},
        }
        self._pending = (_event("message_start", _dumps({"type": "message_start",
                                                         "message": message}))
                         + _event("ping", '{"type":"ping"}'))
        self._input_tokens = input_tokens
        self._text_open = False
        self._delta_head = ('event: content_block_delta\ndata: {"type":"content_block_delta",'
                            '"index":0,"delta":{"type":"text_delta","text":')

    def _text(self, text: str) -> str:
        out = self._pending
        self._pending = ""
        if not self._text_open:
            self._text_open = True
            out += _event("content_block_start", '{"type":"content_block_start","index":0,'
                          '"content_block":{"type":"text","text":""}}')
        return out + self._delta_head + _dumps(text) + "}}\n\n"

    def text(self, text: str) -> bytes:
        return self._text(text).encode()

    def final(self, chunk: ChatChunk) -> bytes:
        out = self._text(chunk.text) if chunk.text else self._pending
        self._pending = ""
        index = 0
        if self._text_open:
            out += _event("content_block_stop", '{"type":"content_block_stop","index":0}')
            index = 1
        for call in chunk.tool_calls:
            block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": _dumps(tool_input(call))}
            out += (_event("content_block_start", _dumps(
                        {"type": "content_block_start", "index": index,
                         "content_block": block}))
                    + _event("content_block_delta", _dumps(
                        {"type": "content_block_delta", "index": index, "delta": delta}))
                    + _event("content_block_stop", _dumps(
                        {"type": "content_block_stop", "index": index})))
            index += 1
        message_delta: dict[str, Any] = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(chunk.finish_reason), "stop_sequence": None},
            "usage": {"input_tokens": _prompt_tokens(chunk, self._input_tokens),
                      "output_tokens": chunk.completion_tokens or 0},
        }
        if self.served_by:
            message_delta["demi"] = {"providers": list(self.served_by)}
        out += (_event("message_delta", _dumps(message_delta))
                + _event("message_stop", '{"type":"message_stop"}'))
        return out.encode()

    def error(self, err: ApiError) -> bytes:
        return _event("error", _dumps(anthropic_error_body(err))).encode()


def _prompt_tokens(chunk: ChatChunk, estimate: int) -> int:
    """The server's count of the prompt, else DEMI's estimate (never a made-up zero)."""
    return chunk.prompt_tokens if chunk.prompt_tokens is not None else estimate


def anthropic_json(got: Collected, message_id: str, input_tokens: int) -> bytes:
    """One ``message`` object: a text block (when there is text), then the tool calls."""
    final = got.final
    content: list[dict[str, Any]] = []
    if got.text:
        content.append({"type": "text", "text": got.text})
    content.extend({"type": "tool_use", "id": c.id, "name": c.name, "input": tool_input(c)}
                   for c in final.tool_calls)
    return _dumps({
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": got.model,
        "content": content,
        "stop_reason": stop_reason(final.finish_reason),
        "stop_sequence": None,
        "usage": {"input_tokens": _prompt_tokens(final, input_tokens),
                  "output_tokens": final.completion_tokens or 0},
    }).encode()
