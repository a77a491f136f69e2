"""OpenAI's Responses API: ``POST /v1/responses`` and the stored responses.

What Codex, the OpenAI Agents SDK and the ``openai`` client's ``responses`` call speak. A
request is translated onto DEMI's own chat (``bodies.py``, ``tools.py``) and answered by
``relay.answer`` like every other face, so failover, hedging, mid-stream continuation,
routing and metrics are the same; ``encoders.py`` spells the reply as a response object
or its event stream. Errors use OpenAI's error object (``/v1`` paths).

Routes:

* ``POST /v1/responses``                       create (``stream`` true or false);
* ``GET /v1/responses/{id}``                   a stored response;
* ``DELETE /v1/responses/{id}``                forget it;
* ``GET /v1/responses/{id}/input_items``       the input it was made from.

With ``store`` (true unless the request says false) the finished response is kept in the
bounded store (``store.py``) before the client hears that it ended, so a client sending its
next turn at once with ``previous_response_id`` finds it. An unknown, deleted or expired
``previous_response_id`` is a 404: the conversation is never continued without its earlier
turns.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ...llm import ReplyStream
from ..bodies import parse_body
from ..http.errors import JSON_TYPE, ApiError
from ..http.state import ConductorState
from ..openai.routes import check_model
from ..relay import Collected, answer
from .bodies import ResponsesBody, translate
from .encoders import ResponseFrame, ResponsesSSE, cut_short, output_items
from .store import ResponseStore, StoredResponse, open_store

_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _not_found(response_id: str, param: str | None = None) -> ApiError:
    return ApiError(
        404, f"Response with id '{response_id}' not found: it was made with store: false, "
        "deleted, or dropped from DEMI's store (conductor.responses.max_items / max_age)",
        param=param, code="response_not_found",
    )


class ResponsesRoutes:
    """Handlers bound to one app's state and its response store."""

    def __init__(self, state: ConductorState) -> None:
        self.state = state
        self._store: ResponseStore | None = None

    @property
    def store(self) -> ResponseStore:
        if self._store is None:
            raise RuntimeError("the response store is opened when the app starts")
        return self._store

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/responses", self.create)
        app.router.add_get("/v1/responses/{id}", self.retrieve)
        app.router.add_delete("/v1/responses/{id}", self.delete)
        app.router.add_get("/v1/responses/{id}/input_items", self.input_items)
        app.cleanup_ctx.append(self._store_lifecycle)

    async def _store_lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        self._store = await open_store(self.state.config.conductor.responses)
        try:
            yield
        finally:
            store, self._store = self._store, None
            await store.close()

    async def create(self, request: web.Request) -> web.StreamResponse:
        state = self.state
        body = await parse_body(request, state.max_body, ResponsesBody)
        check_model(state, body.model)
        history: list[dict[str, Any]] = []
        if body.previous_response_id is not None:
            previous = await self.store.get(body.previous_response_id)
            if previous is None:
                raise _not_found(body.previous_response_id, "previous_response_id")
            history = previous.history
        chat = translate(body, history, state.logger)
        frame = ResponseFrame(state.next_id("resp_"), body)
        made: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []  # (response, output)
        streams: list[ResponsesSSE] = []

        def sse(reply: ReplyStream) -> ResponsesSSE:
            streams.append(ResponsesSSE(frame, reply.model, chat.tools, state.next_id))
            return streams[-1]

        def whole(got: Collected) -> bytes:
            output = output_items(state.next_id, got.text, got.final, chat.tools)
            status = "incomplete" if cut_short(got.final) else "completed"
            made.append((frame.response(status, got.model, output, final=got.final), output))
            return _dumps(made[-1][0]).encode()

        async def keep() -> None:
            """Store the finished response (before the client hears it ended)."""
            if streams and streams[-1].response is not None:
                made.append((streams[-1].response, streams[-1].output))
            if body.stored and made:
                response, output = made[-1]
                await self.store.put(StoredResponse(
                    frame.id, float(frame.created_at), response, chat.input,
                    [*history, *chat.input, *output]))

        return await answer(state, request, chat.messages, chat.options,
                            stream=sse if body.stream else None, whole=whole, before_end=keep)

    async def retrieve(self, request: web.Request) -> web.Response:
        """``GET /v1/responses/{id}``: the stored response object."""
        stored = await self._stored(request)
        return web.Response(body=_dumps(stored.response).encode(), content_type=JSON_TYPE)

    async def delete(self, request: web.Request) -> web.Response:
        """``DELETE /v1/responses/{id}``: forget a stored response."""
        response_id = request.match_info["id"]
        if not await self.store.delete(response_id):
            raise _not_found(response_id)
        gone = {"id": response_id, "object": "response", "deleted": True}
        return web.Response(body=_dumps(gone).encode(), content_type=JSON_TYPE)

    async def input_items(self, request: web.Request) -> web.Response:
        """``GET /v1/responses/{id}/input_items``: the request's input, as one page."""
        stored = await self._stored(request)
        items = [{"id": f"{stored.id}_in{i}", "type": "message", **item}
                 for i, item in enumerate(stored.input)]
        if request.query.get("order", "desc") == "desc":
            items.reverse()
        page = {"object": "list", "data": items, "has_more": False,
                "first_id": items[0]["id"] if items else None,
                "last_id": items[-1]["id"] if items else None}
        return web.Response(body=_dumps(page).encode(), content_type=JSON_TYPE)

    async def _stored(self, request: web.Request) -> StoredResponse:
        response_id = request.match_info["id"]
        stored = await self.store.get(response_id)
        if stored is None:
            raise _not_found(response_id)
        return stored
