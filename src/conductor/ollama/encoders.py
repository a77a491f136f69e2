"""The Ollama face's encoders: typed chunks from the LLM layer in, Ollama's bytes out.

* :class:`OllamaNDJSON`  one JSON object per line, the last with ``done: true``;
* :func:`ollama_json`    the ``done: true`` object alone.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ...llm import ChatChunk, ReplyStream, ToolCall
from ..http.errors import ApiError
from ..relay import Collected

NDJSON_TYPE = "application/x-ndjson"
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def ollama_call(call: ToolCall) -> dict[str, Any]:
    """A tool call as Ollama spells it: ``arguments`` is a JSON object."""
    try:
        arguments = json.loads(call.arguments or "{}")
    except ValueError:
        arguments = {}
    if not isinstance(arguments, dict):
        arguments = {}
    return {"function": {"name": call.name, "arguments": arguments}}




def created_at() -> str:
    """RFC 3339 UTC with microseconds, as Ollama writes ``created_at``."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


def _ollama_final(
    model: str, text: str, final: ChatChunk, reply: ReplyStream, started: int, chat: bool,
    streamed: bool = False,
) -> dict[str, Any]:
    """The ``done: true`` object: reason, nanosecond durations and token counts."""
    total = time.perf_counter_ns() - started
    ttft = reply.time_to_first_token
    prompt_ns = min(total, int(ttft * 1e9)) if ttft is not None else 0
    obj: dict[str, Any] = {"model": model, "created_at": created_at()}
    if chat:
        obj["message"] = {"role": "assistant", "content": text}
        if final.tool_calls and not streamed:
            obj["message"]["tool_calls"] = [ollama_call(c) for c in final.tool_calls]
    else:
        obj["response"] = text
    obj.update(
        done=True,
        done_reason="length" if final.finish_reason == "length" else "stop",
        total_duration=total,
        load_duration=0,
        prompt_eval_count=final.prompt_tokens or 0,
        prompt_eval_duration=prompt_ns,
        eval_count=final.completion_tokens or 0,
        eval_duration=total - prompt_ns,
    )
    return obj


class OllamaNDJSON:
    """One object per line (``message`` for /api/chat, ``response`` for /api/generate); a
    broken reply keeps its 200 and ends with an ``{"error": ...}`` line."""

    content_type = NDJSON_TYPE
    served_by: tuple[str, ...] = ()

    def __init__(self, reply: ReplyStream, started: int, chat: bool) -> None:
        self._reply = reply
        self._started = started
        self._chat = chat
        head = '{"model":' + _dumps(reply.model) + ',"created_at":"' + created_at() + '",'
        if chat:
            self._text_head = head + '"message":{"role":"assistant","content":'
            self._text_tail = '},"done":false}\n'
        else:
            self._text_head, self._text_tail = head + '"response":', ',"done":false}\n'

    def text(self, text: str) -> bytes:
        return (self._text_head + _dumps(text) + self._text_tail).encode()

    def final(self, chunk: ChatChunk) -> bytes:
        out = ""
        if chunk.tool_calls and self._chat:
            # As Ollama streams them: whole calls on a line of their own before the done line.
            out = (self._text_head + '""' + ',"tool_calls":'
                   + _dumps([ollama_call(c) for c in chunk.tool_calls]) + self._text_tail)
        obj = _ollama_final(self._reply.model, chunk.text, chunk, self._reply, self._started,
                            self._chat, streamed=True)
        if self.served_by:
            obj["demi"] = {"providers": list(self.served_by)}
        return (out + _dumps(obj) + "\n").encode()

    def error(self, err: ApiError) -> bytes:
        return (_dumps({"error": err.message}) + "\n").encode()


def ollama_json(got: Collected, started: int, chat: bool) -> bytes:
    """The whole reply as Ollama's single ``done: true`` object."""
    return _dumps(_ollama_final(got.model, got.text, got.final, got.reply, started,
                                chat)).encode()
