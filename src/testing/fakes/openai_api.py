"""OpenAI-compatible routes (``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``).

LM Studio speaks this API natively and Ollama serves it as a compatibility layer; the wire format
is the same, only model resolution, the model list and error wording differ.  So the routes live
here once in :class:`OpenAIRoutes`, and each fake subclasses it to supply those differences.

Streaming follows docs/PROTOCOLS.md exactly: a role chunk, one chunk per token, a finish chunk,
a usage chunk (``choices: []``) only when ``stream_options.include_usage`` is true, then
``data: [DONE]``; every chunk carries the same ``id`` and ``created``.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, ClassVar

from aiohttp import web

from .abilities import embedding, json_text, openai_schema, tool_call
from .control import INVALID_JSON, STATE, Behaviour, FakeState
from .engine import (
    StreamPlan,
    answer_stream,
    answer_whole,
    cap_tokens,
    dumps,
    positive_int,
    preamble,
    prompt_tokens_for_messages,
    prompt_tokens_for_text,
)
from .tokens import continue_from

SSE_HEADERS = {"Cache-Control": "no-cache"}
JSON_TYPE = "application/json; charset=utf-8"
_ids = itertools.count(1)


def sse(payload: str) -> bytes:
    """One server-sent event carrying ``payload`` as its data."""
    return f"data: {payload}\n\n".encode()


class OpenAIRoutes:
    """OpenAI wire format; subclasses define resolution, model list and error wording."""

    #: ``system_fingerprint`` put in every completion object (None: field omitted).
    fingerprint: str | None = None
    #: Default messages for the ``status`` mode, by HTTP status: (message, type, code).
    status_messages: ClassVar[dict[int, tuple[str, str, str | None]]] = {}
    #: ``param`` of 400/404 errors (OpenAI and LM Studio name the field; Ollama sends null).
    model_param: str | None = "model"
    #: Message of a mid-stream (or non-streamed 500) generation failure.
    accepts_json_object = True
    """LM Studio refuses ``response_format: json_object`` (it takes ``json_schema`` only)."""
    midstream_message = "The model has crashed without additional information. (Exit code: null)"

    # ---- hooks for the subclasses ------------------------------------------------------------
    def resolve_model(
        self, state: FakeState, requested: Any, behaviour: Behaviour
    ) -> tuple[str | None, web.Response | None]:
        """Model that serves ``requested``, or an error response (in ``behaviour.error_shape``)."""
        raise NotImplementedError

    def model_list(self, state: FakeState) -> dict[str, Any]:
        """Body of ``GET /v1/models``."""
        raise NotImplementedError

    def loading_response(self) -> web.Response | None:
        """Answer of the ``loading`` mode, or None when loading only delays (Ollama)."""
        return None

    # ---- error shapes ------------------------------------------------------------------------
    def error(
        self,
        status: int,
        message: str,
        *,
        type_: str,
        param: str | None = None,
        code: str | None = None,
        shape: str = "object",
    ) -> web.Response:
        """OpenAI error body (``{"error":{message,type,param,code}}``) or the old string shape."""
        inner: Any = (
            message
            if shape == "string"
            else {"message": message, "type": type_, "param": param, "code": code}
        )
        return web.json_response({"error": inner}, status=status, dumps=dumps)

    def status_error(
        self, behaviour: Behaviour, model: Any, status: int, message: str | None
    ) -> web.Response:
        """Realistic error for the ``status`` mode (and 500 for non-streamed midstream errors)."""
        default, type_, code = self.status_messages.get(
            status, ("Internal server error", "server_error", None)
        )
        if status == 500 and behaviour.mode == "midstream_error":
            default = self.midstream_message
        text = message or default.format(model=model if isinstance(model, str) else "")
        param = self.model_param if status in (400, 404) else None
        return self.error(
            status, text, type_=type_, param=param, code=code, shape=behaviour.error_shape
        )

    def error_line(self, behaviour: Behaviour) -> bytes:
        """SSE event carrying a mid-stream error (the openai client raises APIError on it)."""
        message = behaviour.message or self.midstream_message
        if behaviour.error_shape == "string":
            return sse(dumps({"error": message}))
        return sse(
            dumps(
                {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
            )
        )

    # ---- routes --------------------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        """Register the OpenAI-compatible routes on ``app``."""
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/embeddings", self.embeddings)

    async def list_models(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/models`` (a health route)."""
        state = request.app[STATE]
        behaviour = state.plan("health")

        def err(status: int, message: str | None) -> web.Response:
            return self.status_error(behaviour, None, status, message)

        early = await preamble(request, behaviour, error=err, loading=self.loading_response)
        if early is not None:
            return early
        return await answer_whole(
            request,
            behaviour,
            body=lambda: dumps(self.model_list(state)).encode(),
            content_type=JSON_TYPE,
            error=err,
        )

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/chat/completions``."""
        return await self._generate(request, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/completions`` (legacy text completions)."""
        return await self._generate(request, chat=False)

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/embeddings``: one vector per input, for a listed model only."""
        state = request.app[STATE]
        body = request["json"]
        if not isinstance(body, dict):
            return self.error(400, "Invalid JSON in request body", type_="invalid_request_error")
        model = body.get("model")
        if model not in state.models:
            return self.error(404, f'Model "{model}" not found. Please check the model '
                              "identifier.", type_="invalid_request_error", param="model")
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return self.error(400, "'input' must be a string or an array of strings",
                              type_="invalid_request_error", param="input")
        tokens = sum(1 + len(t) // 4 for t in texts)
        return web.json_response({
            "object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": embedding(t)}
                     for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}, dumps=dumps)

    def extra_fields(self, request: web.Request, tokens: int, started: float) -> dict[str, Any]:
        """Hook: fields added to a non-streamed completion (LM Studio's v0 ``stats``)."""
        return {}

    async def _generate(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        started = time.monotonic()
        state = request.app[STATE]
        behaviour = state.plan("chat")
        body = request["json"]
        requested = body.get("model") if isinstance(body, dict) else None
        streaming = isinstance(body, dict) and body.get("stream") is True

        def err(status: int, message: str | None) -> web.Response:
            return self.status_error(behaviour, requested, status, message)

        early = await preamble(
            request, behaviour, error=err, loading=self.loading_response, streaming=streaming
        )
        if early is not None:
            return early
        if body is INVALID_JSON or not isinstance(body, dict):
            return self.error(400, "Invalid JSON in request body", type_="invalid_request_error")
        if chat and not isinstance(body.get("messages"), list):
            return self.error(
                400,
                "'messages' is required and must be an array",
                type_="invalid_request_error",
                param="messages",
            )
        model, failure = self.resolve_model(state, requested, behaviour)
        if failure is not None:
            return failure
        assert model is not None
        await state.ensure_loaded(model)
        limit = positive_int(body.get("max_tokens")) or positive_int(
            body.get("max_completion_tokens")
        )
        own = continue_from(state.tokens, body.get("messages")) if chat else state.tokens
        tokens, finish = cap_tokens(own, limit)
        schema = openai_schema(body)
        if schema == "json" and not self.accepts_json_object:
            return self.error(400, "'response_format.type' must be 'json_schema'",
                              type_="invalid_request_error", param="response_format")
        if schema is not None:
            tokens = (json_text(schema, "".join(tokens)),)
        call = tool_call(body, state.tool_calls) if chat else None
        if call is not None:
            tokens, finish = (), "tool_calls"
            call_id = f"call_fake{next(_ids)}"
            arguments = dumps(call[1])
        if chat:
            prompt = prompt_tokens_for_messages(body.get("messages"))
        else:
            prompt = prompt_tokens_for_text(body.get("prompt"))
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": len(tokens),
            "total_tokens": prompt + len(tokens),
        }
        ident = f"{'chatcmpl' if chat else 'cmpl'}-fake{next(_ids)}"
        created = int(time.time())
        if streaming:
            opts = body.get("stream_options")
            with_usage = (isinstance(opts, dict) and opts.get("include_usage") is True
                          and behaviour.usage)
            plan = self._stream_plan(
                behaviour, chat, ident, created, model, tokens, finish, usage, with_usage
            )
            if call is not None:  # fragments: id and name first, the arguments in two halves
                half = len(arguments) // 2
                pieces = [
                    {"index": 0, "id": call_id, "type": "function",
                     "function": {"name": call[0], "arguments": ""}},
                    {"index": 0, "function": {"arguments": arguments[:half]}},
                    {"index": 0, "function": {"arguments": arguments[half:]}},
                ]
                plan.chunks = [
                    sse(dumps({"id": ident, "object": "chat.completion.chunk",
                               "created": created, "model": model, "choices": [{
                                   "index": 0, "delta": {"tool_calls": [piece]},
                                   "logprobs": None, "finish_reason": None}]}))
                    for piece in pieces
                ]
            return await answer_stream(request, behaviour, plan)

        def whole() -> bytes:
            choice: dict[str, Any] = {"index": 0}
            if chat:
                choice["message"] = {"role": "assistant", "content": "".join(tokens)}
                if call is not None:
                    choice["message"] = {"role": "assistant", "content": None, "tool_calls": [
                        {"id": call_id, "type": "function",
                         "function": {"name": call[0], "arguments": arguments}}]}
            else:
                choice["text"] = "".join(tokens)
            choice.update({"logprobs": None, "finish_reason": finish})
            obj: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion" if chat else "text_completion",
                "created": created,
                "model": model,
                "choices": [choice],
            }
            if behaviour.usage:
                obj["usage"] = usage
            if self.fingerprint:
                obj["system_fingerprint"] = self.fingerprint
            obj.update(self.extra_fields(request, len(tokens), started))
            return dumps(obj).encode()

        return await answer_whole(
            request,
            behaviour,
            body=whole,
            content_type=JSON_TYPE,
            error=err,
            generation_chunks=len(tokens),
        )

    def _stream_plan(
        self,
        behaviour: Behaviour,
        chat: bool,
        ident: str,
        created: int,
        model: str,
        tokens: tuple[str, ...],
        finish: str,
        usage: dict[str, int],
        with_usage: bool,
    ) -> StreamPlan:
        """Pre-spell every SSE event of the reply (prefix once, then one splice per token)."""
        kind = "chat.completion.chunk" if chat else "text_completion"
        prefix = (
            f'data: {{"id":"{ident}","object":"{kind}","created":{created},"model":{dumps(model)}'
        )
        if self.fingerprint:
            prefix += f',"system_fingerprint":"{self.fingerprint}"'
        if chat:
            open_, close = (
                ',"choices":[{"index":0,"delta":{"content":',
                '},"logprobs":null,"finish_reason":null}]}\n\n',
            )
            head = (
                prefix + ',"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
                '"logprobs":null,"finish_reason":null}]}\n\n'
            ).encode()
            end = f'{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"{finish}"}}'
            final = prefix + f',"choices":[{end}]}}\n\n'
        else:
            open_, close = (
                ',"choices":[{"index":0,"text":',
                ',"logprobs":null,"finish_reason":null}]}\n\n',
            )
            head = b""
            end = f'{{"index":0,"text":"","logprobs":null,"finish_reason":"{finish}"}}'
            final = prefix + f',"choices":[{end}]}}\n\n'
        if with_usage:
            final += prefix + f',"choices":[],"usage":{dumps(usage)}}}\n\n'
        final_bytes = (final + "data: [DONE]\n\n").encode()
        chunks = [(prefix + open_ + dumps(tok) + close).encode() for tok in tokens]
        malformed = (prefix + ',"choices":[{"index":0,"delta":{"content":"\n\n').encode()
        return StreamPlan(
            content_type="text/event-stream",
            head=head,
            chunks=chunks,
            tail=lambda: final_bytes,
            error_line=self.error_line(behaviour),
            malformed_line=malformed,
            headers=SSE_HEADERS,
        )
