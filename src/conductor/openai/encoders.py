"""The OpenAI face's encoders: typed chunks from the LLM layer in, OpenAI's bytes out.

* :class:`OpenAISSE`     ``chat.completion.chunk`` server-sent events, ``data: [DONE]``;
* :func:`openai_json`    one ``chat.completion`` object.

Stream chunks are built from precomputed prefix/suffix strings around one ``json.dumps``
of the text, so the per-chunk cost is that dump and one write.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ...llm import ChatChunk, ToolCall
from ..http.errors import ApiError, openai_error_body
from ..relay import Collected

SSE_TYPE = "text/event-stream"
FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter"})
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def finish_reason(reason: str | None) -> str:
    """OpenAI's and Ollama's finish reasons are ``stop`` and ``length``; anything else is stop."""
    return reason if reason in FINISH_REASONS else "stop"




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
            head + '{"index":0,"delta":{"role":"assistant","content":"","refusal":null}'
            + self._text_tail[1:]
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


def openai_json(got: Collected, chunk_id: str) -> bytes:
    """One ``chat.completion`` object."""
    final = got.final
    prompt = final.prompt_tokens or 0
    completion = final.completion_tokens or 0
    message: dict[str, Any] = {"role": "assistant", "content": got.text, "refusal": None}
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


