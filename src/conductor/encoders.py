"""Per-protocol encoders: typed chunks from the LLM layer in, bytes for one protocol out.

The chain produces :class:`~src.llm.types.ChatChunk` objects; ``relay.py`` runs the one
stream pipeline (open, write each text, write the final chunk, end with an error event if
the reply breaks) and asks an encoder for the bytes. Four encoders, one per wire format:

* :class:`OpenAISSE`     ``chat.completion.chunk`` server-sent events, ``data: [DONE]``;
* :func:`openai_json`    one ``chat.completion`` object;
* :class:`OllamaNDJSON`  one JSON object per line, the last with ``done: true``;
* :func:`ollama_json`    the ``done: true`` object alone.

Stream chunks are built from precomputed prefix/suffix strings around one ``json.dumps``
of the text, so the per-chunk cost is that dump and one write.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

from ..llm.types import ChatChunk, ToolCall
from ..llm.walk.reply import ReplyStream
from .http.errors import ApiError, openai_error_body

SSE_TYPE = "text/event-stream"
NDJSON_TYPE = "application/x-ndjson"
FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter"})
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def finish_reason(reason: str | None) -> str:
    """OpenAI's and Ollama's finish reasons are ``stop`` and ``length``; anything else is stop."""
    return reason if reason in FINISH_REASONS else "stop"


class Collected:
    """A whole reply (``relay.collect`` builds it), for the whole-reply encoders."""

    __slots__ = ("final", "reply", "text")

    def __init__(self, reply: ReplyStream, text: str, final: ChatChunk) -> None:
        self.reply = reply
        self.text = text
        self.final = final

    @property
    def model(self) -> str:
        return self.final.model or self.reply.model



class StreamEncoder(Protocol):
    """Bytes for one streamed reply; one instance per reply."""

    content_type: str
    served_by: tuple[str, ...]
    """Set before :meth:`final` when several providers served (a mid-stream continuation):
    the final chunk names them in a ``demi.providers`` field."""

    def text(self, text: str) -> bytes:
        """A piece of the answer."""

    def final(self, chunk: ChatChunk) -> bytes:
        """The last chunk (it may carry text too), and whatever ends the stream."""

    def error(self, err: ApiError) -> bytes:
        """A terminal error event for a reply that broke after it started."""


# -- OpenAI --------------------------------------------------------------------------------


class OpenAISSE:
    """A role chunk (riding with the first text), content chunks, a finish chunk, a usage
    chunk when ``stream_options.include_usage`` is true, then ``data: [DONE]``; the same
    ``id`` and ``created`` on every chunk. A broken reply ends with ``data: {"error": ...}``
    and no ``[DONE]``: the ``openai`` client raises on it."""

    content_type = SSE_TYPE
    served_by: tuple[str, ...] = ()

    def __init__(self, chunk_id: str, model: str, include_usage: bool) -> None:
        self._head = head = (
            'data: {"id":"' + chunk_id + '","object":"chat.completion.chunk","created":'
            + str(int(time.time())) + ',"model":' + _dumps(model) + ',"choices":['
        )
        self._text_head = head + '{"index":0,"delta":{"content":'
        self._text_tail = '},"finish_reason":null}]}\n\n'
        self._pending = (
            head + '{"index":0,"delta":{"role":"assistant","content":""}' + self._text_tail[1:]
        )
        self._include_usage = include_usage

    def text(self, text: str) -> bytes:
        # The role chunk rides with the first text: one write, not two.
        out = self._pending + self._text_head + _dumps(text) + self._text_tail
        self._pending = ""
        return out.encode()

    def final(self, chunk: ChatChunk) -> bytes:
        head = self._head
        out = (self._pending + self._text_head + _dumps(chunk.text) + self._text_tail
               if chunk.text else self._pending)
        if chunk.tool_calls:
            # Whole calls in one delta: clients accumulate fragments, and one is a fragment.
            calls = [{"index": i, **openai_call(c)} for i, c in enumerate(chunk.tool_calls)]
            delta = {"role": "assistant", "content": None, "tool_calls": calls} if (
                self._pending or not chunk.text) else {"tool_calls": calls}
            out += (head + '{"index":0,"delta":' + _dumps(delta)
                    + ',"finish_reason":null}]}\n\n')
        demi = (',"demi":' + _dumps({"providers": list(self.served_by)})
                if self.served_by else "")
        out += (head + '{"index":0,"delta":{},"finish_reason":"'
                + finish_reason(chunk.finish_reason) + '"}]' + demi + '}\n\n')
        if self._include_usage:
            p, c = chunk.prompt_tokens or 0, chunk.completion_tokens or 0
            out += (head + '],"usage":{"prompt_tokens":' + str(p) + ',"completion_tokens":'
                    + str(c) + ',"total_tokens":' + str(p + c) + "}}\n\n")
        return (out + "data: [DONE]\n\n").encode()

    def error(self, err: ApiError) -> bytes:
        return b"data: " + _dumps(openai_error_body(err)).encode() + b"\n\n"


def openai_call(call: ToolCall) -> dict[str, Any]:
    """A tool call as OpenAI spells it: ``arguments`` is a JSON string."""
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": call.arguments}}


def ollama_call(call: ToolCall) -> dict[str, Any]:
    """A tool call as Ollama spells it: ``arguments`` is a JSON object."""
    try:
        arguments = json.loads(call.arguments or "{}")
    except ValueError:
        arguments = {}
    if not isinstance(arguments, dict):
        arguments = {}
    return {"function": {"name": call.name, "arguments": arguments}}


def openai_json(got: Collected, chunk_id: str) -> bytes:
    """One ``chat.completion`` object."""
    final = got.final
    prompt = final.prompt_tokens or 0
    completion = final.completion_tokens or 0
    message: dict[str, Any] = {"role": "assistant", "content": got.text}
    if final.tool_calls:
        message["content"] = got.text or None
        message["tool_calls"] = [openai_call(c) for c in final.tool_calls]
    return _dumps({
        "id": chunk_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": got.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": finish_reason(final.finish_reason),
        }],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion},
    }).encode()


# -- Ollama --------------------------------------------------------------------------------


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
