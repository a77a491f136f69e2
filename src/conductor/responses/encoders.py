"""The Responses face's encoders: the LLM layer's chunks in, OpenAI's Responses bytes out.

* :class:`ResponseFrame`  what every response object of one request carries (its id, its
  creation time, the request's settings echoed back), and the object itself;
* :class:`ResponsesSSE`   the server-sent event sequence of a streamed response;
* :func:`output_items`    the ``output`` list of a whole reply.

A streamed reply is::

    response.created, response.in_progress
    response.output_item.added (message), response.content_part.added
    response.output_text.delta ...
    response.output_text.done, response.content_part.done, response.output_item.done
    for each tool call: response.output_item.added (function_call),
        response.function_call_arguments.delta / .done, response.output_item.done
    response.completed   (response.incomplete when max_output_tokens cut it)

each as ``event: <type>`` + ``data: {"type": <type>, "sequence_number": n, ...}``. A reply
that breaks after it started ends with ``response.failed``, whose response carries the
error. Tool calls come whole at the end of a reply (the LLM layer hands them over whole),
so their arguments are one delta each.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from ...llm import ChatChunk, ToolCall
from ..http.errors import ApiError
from .bodies import ResponsesBody
from .tools import ToolTable, call_arguments

SSE_TYPE = "text/event-stream"
_dumps = json.JSONEncoder(separators=(",", ":")).encode
NewId = Callable[[str], str]


def usage(chunk: ChatChunk) -> dict[str, Any]:
    prompt, completion = chunk.prompt_tokens or 0, chunk.completion_tokens or 0
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion}


def cut_short(chunk: ChatChunk) -> bool:
    """Whether the reply stopped at the token limit (the response is ``incomplete``)."""
    return chunk.finish_reason == "length"


class ResponseFrame:
    """One request's response object, at each stage of its life."""

    def __init__(self, response_id: str, body: ResponsesBody, created_at: float | None = None):
        self.id = response_id
        self.created_at = int(created_at if created_at is not None else time.time())
        reasoning = body.reasoning
        text_format = body.text.format if body.text and body.text.format else {"type": "text"}
        self._echo: dict[str, Any] = {
            "instructions": body.instructions,
            "max_output_tokens": body.max_output_tokens,
            "metadata": body.metadata or {},
            "parallel_tool_calls": body.parallel_tool_calls is not False,
            "previous_response_id": body.previous_response_id,
            "reasoning": {"effort": reasoning.effort if reasoning else None,
                          "summary": reasoning.summary if reasoning else None},
            "store": body.stored,
            "temperature": body.temperature,
            "text": {"format": text_format},
            "tool_choice": body.tool_choice if body.tool_choice is not None else "auto",
            "tools": body.tools or [],
            "top_p": body.top_p,
            "truncation": body.truncation or "disabled",
            "background": False,
        }

    def response(
        self, status: str, model: str, output: Sequence[dict[str, Any]] = (), *,
        final: ChatChunk | None = None, error: ApiError | None = None,
        providers: Sequence[str] = (),
    ) -> dict[str, Any]:
        """The response object: ``in_progress``, ``completed``, ``incomplete`` or ``failed``."""
        obj: dict[str, Any] = {
            "id": self.id, "object": "response", "created_at": self.created_at,
            "status": status, "error": None, "incomplete_details": None, "model": model,
            "output": list(output), **self._echo,
            "usage": usage(final) if final is not None else None,
        }
        if status in ("completed", "incomplete"):
            obj["completed_at"] = int(time.time())
        if status == "incomplete":
            obj["incomplete_details"] = {"reason": "max_output_tokens"}
        if error is not None:
            obj["error"] = {"code": "server_error" if error.status >= 500 else "invalid_prompt",
                            "message": error.message}
        if output:
            obj["output_text"] = "".join(
                part["text"] for item in output if item["type"] == "message"
                for part in item["content"] if part["type"] == "output_text")
        if providers:  # continued mid-stream: say who served it
            obj["demi"] = {"providers": list(providers)}
        return obj


def message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [],
                         "logprobs": []}]}


def call_item(new_id: NewId, call: ToolCall, table: ToolTable) -> dict[str, Any]:
    """A tool call as the Responses item the caller offered it as."""
    tool = table.called(call.name)
    if tool.kind == "custom":
        item: dict[str, Any] = {"id": new_id("ctc_"), "type": "custom_tool_call",
                                "status": "completed", "call_id": call.id, "name": tool.name,
                                "input": call_arguments(tool, call.arguments)}
    else:
        item = {"id": new_id("fc_"), "type": "function_call", "status": "completed",
                "call_id": call.id, "name": tool.name, "arguments": call.arguments}
    if tool.namespace is not None:
        item["namespace"] = tool.namespace
    return item


def output_items(new_id: NewId, text: str, final: ChatChunk,
                 table: ToolTable) -> list[dict[str, Any]]:
    """The ``output`` of a whole reply: its text as a message (unless the reply is calls
    only), then one item per tool call."""
    items: list[dict[str, Any]] = []
    if text or not final.tool_calls:
        status = "incomplete" if cut_short(final) else "completed"
        items.append(message_item(new_id("msg_"), text, status))
    items.extend(call_item(new_id, call, table) for call in final.tool_calls)
    return items


class ResponsesSSE:
    """The event sequence of one streamed response (a :class:`~..relay.StreamEncoder`).

    After :meth:`final`, :attr:`response` is the finished response object (what
    ``GET /v1/responses/{id}`` returns when it is stored) and :attr:`output` its items.
    """

    content_type = SSE_TYPE
    served_by: tuple[str, ...] = ()

    def __init__(self, frame: ResponseFrame, model: str, table: ToolTable,
                 new_id: NewId) -> None:
        self.frame = frame
        self.model = model
        self.table = table
        self.new_id = new_id
        self.response: dict[str, Any] | None = None
        self.output: list[dict[str, Any]] = []
        self._seq = 0
        self._opened = False
        self._message_id: str | None = None
        self._delta_head = ""
        self._texts: list[str] = []

    def _event(self, kind: str, payload: dict[str, Any]) -> str:
        body = {"type": kind, "sequence_number": self._seq, **payload}
        self._seq += 1
        return f"event: {kind}\ndata: {_dumps(body)}\n\n"

    def _open(self) -> str:
        """``response.created`` and ``response.in_progress``, once, with the first output."""
        if self._opened:
            return ""
        self._opened = True
        start = _dumps(self.frame.response("in_progress", self.model))  # once for both
        out = ""
        for kind in ("response.created", "response.in_progress"):
            out += (f'event: {kind}\ndata: {{"type":"{kind}","sequence_number":{self._seq},'
                    f'"response":{start}}}\n\n')
            self._seq += 1
        return out

    def _start_message(self) -> str:
        if self._message_id is not None:
            return ""
        self._message_id = item_id = self.new_id("msg_")
        added = {"id": item_id, "type": "message", "status": "in_progress",
                 "role": "assistant", "content": []}
        self._delta_head = (
            'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
            '"item_id":"' + item_id + '","output_index":0,"content_index":0,"logprobs":[],'
            '"sequence_number":')
        return (self._event("response.output_item.added", {"output_index": 0, "item": added})
                + self._event("response.content_part.added", {
                    "item_id": item_id, "output_index": 0, "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": []}}))

    def _delta(self, text: str) -> str:
        self._texts.append(text)
        out = self._delta_head + str(self._seq) + ',"delta":' + _dumps(text) + "}\n\n"
        self._seq += 1
        return out

    def text(self, text: str) -> bytes:
        return (self._open() + self._start_message() + self._delta(text)).encode()

    def _end_message(self, status: str) -> str:
        item_id = self._message_id
        assert item_id is not None
        text = "".join(self._texts)
        item = message_item(item_id, text, status)
        self.output.append(item)
        where = {"item_id": item_id, "output_index": 0, "content_index": 0}
        return (self._event("response.output_text.done", {**where, "text": text,
                                                          "logprobs": []})
                + self._event("response.content_part.done", {**where,
                                                             "part": item["content"][0]})
                + self._event("response.output_item.done", {"output_index": 0, "item": item}))

    def _call(self, call: ToolCall) -> str:
        index = len(self.output)
        item = call_item(self.new_id, call, self.table)
        self.output.append(item)
        custom = item["type"] == "custom_tool_call"
        field, events = ("input", "response.custom_tool_call_input") if custom else (
            "arguments", "response.function_call_arguments")
        where = {"item_id": item["id"], "output_index": index}
        done: dict[str, Any] = {**where, field: item[field]}
        if not custom:
            done["name"] = item["name"]
        return (self._event("response.output_item.added", {
                    "output_index": index, "item": {**item, "status": "in_progress",
                                                    field: ""}})
                + self._event(f"{events}.delta", {**where, "delta": item[field]})
                + self._event(f"{events}.done", done)
                + self._event("response.output_item.done", {"output_index": index,
                                                            "item": item}))

    def final(self, chunk: ChatChunk) -> bytes:
        out = self._open()
        status = "incomplete" if cut_short(chunk) else "completed"
        if chunk.text or self._message_id is not None or not chunk.tool_calls:
            out += self._start_message()
            if chunk.text:
                out += self._delta(chunk.text)
            out += self._end_message(status)
        for call in chunk.tool_calls:
            out += self._call(call)
        self.response = self.frame.response(status, chunk.model or self.model, self.output,
                                            final=chunk, providers=self.served_by)
        out += self._event(f"response.{status}", {"response": self.response})
        return out.encode()

    def error(self, err: ApiError) -> bytes:
        failed = self.frame.response("failed", self.model, self.output, error=err)
        return (self._open() + self._event("response.failed", {"response": failed})).encode()
