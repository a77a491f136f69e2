"""Any OpenAI-compatible server (vLLM, llama.cpp's server, LocalAI, ...) over ``aiohttp``.

LM Studio is a small subclass of this in ``lmstudio.py``. The server's error shape is not
standard across engines: ``{"error": "text"}`` and ``{"error": {"message": ...}}`` both
occur, and an SSE stream may carry an ``error`` event after a 200; every case maps to
DEMI's error tree here.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import aiohttp

from ..errors import (
    ModelNotFound,
    ProviderBusy,
    ProviderError,
    ProviderResponseError,
    RequestError,
)
from ..types import ChatChunk, ChatRequest, Embeddings, HealthReport
from ._errors import SHARED_ERRORS, ErrorBoundary, error_text, malformed, map_errors, map_status
from ._payload import SlicedBody, json_body
from ._timing import ReplyClock
from ._translate import (
    OLLAMA_ONLY_OPTIONS,
    add_fragment,
    openai_tool_calls,
    split_options,
    to_openai,
)
from .base import POOL_LIMIT, Provider, Timeouts

__all__ = ["OpenAICompatProvider", "SessionFactory", "error_text"]

SessionFactory = Callable[[], aiohttp.ClientSession]


class OpenAICompatProvider(Provider):
    """Chat over ``POST /v1/chat/completions`` with SSE streaming; health via ``/v1/models``."""

    kind = "openai"
    json_object_as_schema: ClassVar[bool] = False
    """True for servers that take ``response_format`` ``json_schema`` but not ``json_object``."""

    def __init__(
        self,
        name: str,
        display_name: str,
        *,
        base_url: str,
        model: str | None,
        api_key: str,
        first_token_timeout: float,
        temperature: float,
        context_window: int,
        timeouts: Timeouts,
        region: str | None,
        session_factory: SessionFactory | None = None,
        embedding_model: str | None = None,
    ) -> None:
        super().__init__(
            name, display_name, model=model, context_window=context_window,
            base_url=base_url, region=region,
        )
        self.url = base_url
        self.embedding_model = embedding_model
        self.configured_model = model
        self.api_key = api_key
        self.temperature = temperature
        self.first_token_timeout = first_token_timeout
        self.read_idle_timeout = timeouts.read_idle
        self.connect_timeout = timeouts.connect
        self.health_timeout = timeouts.health
        self._session_factory = session_factory
        self._session: aiohttp.ClientSession | None = None
        self._asked_slots = False
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    def _errors(self, timeout: str | Callable[[], str]) -> ErrorBoundary:
        """The one place this kind's foreign errors become DEMI's (:data:`SHARED_ERRORS`)."""
        return map_errors(self, SHARED_ERRORS, timeout)

    # -- session -----------------------------------------------------------------------
    def _get_session(self) -> aiohttp.ClientSession:
        """One pooled session per provider, opened in the running loop on first use."""
        if self._session is None or self._session.closed:
            if self._session_factory is not None:
                self._session = self._session_factory()
            else:
                self._session = aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(
                        total=None, sock_connect=self.connect_timeout,
                    ),
                    connector=aiohttp.TCPConnector(limit=POOL_LIMIT, ttl_dns_cache=300),
                )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    # -- model -------------------------------------------------------------------------
    async def _model_for(self, request: ChatRequest) -> str:
        """The model to ask for: the request's, the configured one, or the server's own."""
        if request.model:
            return request.model
        if self.model:
            return self.model
        models = await self._available_models()
        if not models:
            raise ModelNotFound(self.name, f"{self.display_name} has no model available")
        self.model = models[0]
        return self.model

    async def _list_models(self, limit: float) -> list[str]:
        """``GET /v1/models`` ids (``data`` may be null on some servers)."""
        data = await self._get_json("/v1/models", limit)
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            return []
        return [str(e["id"]) for e in entries if isinstance(e, dict) and "id" in e]

    async def _get_json(self, path: str, limit: float) -> Any:
        with self._errors(f"no answer from {path} within {limit:g}s"):
            async with asyncio.timeout(limit):
                async with self._get_session().get(
                    self.url + path, headers=self._headers
                ) as resp:
                    body = await resp.read()
                    if resp.status >= 400:
                        raise self._map_status(resp.status, body, resp.headers, self.model or "")
                    return json.loads(body)

    # -- chat --------------------------------------------------------------------------
    def _payload(self, request: ChatRequest, model: str) -> dict[str, Any]:
        said = to_openai(request, json_object_as_schema=self.json_object_as_schema)
        payload: dict[str, Any] = {
            "model": model,
            "messages": said.pop("messages"),
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": self.temperature if request.temperature is None
            else request.temperature,
        }
        if request.max_tokens is not None:
            payload["max_tokens"] = request.max_tokens
        if request.stop:
            payload["stop"] = list(request.stop)
        _, options = split_options(request.options)
        payload.update(
            (k, v) for k, v in options.items() if k not in OLLAMA_ONLY_OPTIONS
        )
        payload.update(said)
        return payload

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:  # type: ignore[override]
        """Stream ``/v1/chat/completions`` as SSE; see :class:`Provider` for the contract."""
        clock = ReplyClock(self.first_token_timeout, self.read_idle_timeout)
        model = await self._model_for(request)
        resp = None
        finish: str | None = None
        usage: dict[str, Any] | None = None
        served_model = model
        fragments: dict[int, dict[str, Any]] = {}
        try:
            with self._errors(clock.describe):
                response = await self._post_chat(clock, json_body(self._payload(request, model)))
                resp = response
                if response.status >= 400:
                    body = await clock.read(response.read())
                    raise self._map_status(response.status, body, response.headers, model)
                content = response.content
                pending = b""
                done = False
                while not done:
                    # Read whatever has arrived and split it ourselves: one await per network
                    # read rather than one per SSE line keeps the per-token cost low.
                    data = await clock.read(content.readany())
                    if not data:
                        raise ProviderResponseError(
                            self.name, "connection closed in the middle of the reply"
                        )
                    lines = (pending + data).split(b"\n")
                    pending = lines.pop()
                    for line in lines:
                        if not line.startswith(b"data:"):
                            continue  # blank separators, ": keep-alive" comments, event: lines
                        payload = line[5:].strip()
                        if payload == b"[DONE]":
                            done = True
                            break
                        event = json.loads(payload)
                        if not isinstance(event, dict):
                            raise malformed(self.name, self.display_name)
                        if "error" in event:
                            said = error_text(json.dumps(event))
                            raise ProviderResponseError(
                                self.name, f"error in the middle of the reply: {said}"
                            )
                        if event.get("usage"):
                            usage = event["usage"]
                        served_model = event.get("model") or served_model
                        choices = event.get("choices") or ()
                        if not isinstance(choices, list | tuple):
                            raise malformed(self.name, self.display_name)
                        for choice in choices:
                            text, reason = self._choice(choice, fragments)
                            if fragments:
                                clock.started = True
                            if reason:
                                finish = reason
                            if text:
                                clock.started = True
                                yield ChatChunk(text=text)
        finally:
            clock.close()
            if resp is not None:
                resp.release()
        if finish is None:
            raise ProviderResponseError(self.name, "the reply ended without a finish reason")
        usage = usage if isinstance(usage, dict) else {}
        calls = openai_tool_calls(fragments)
        yield ChatChunk(
            text="",
            done=True,
            model=served_model,
            finish_reason="tool_calls" if calls else finish,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            tool_calls=calls,
        )

    async def _post_chat(
        self, clock: ReplyClock, body: bytes | SlicedBody
    ) -> aiohttp.ClientResponse:
        """POST the chat; retry once if a pooled keep-alive connection turns out dead.

        aiohttp never retries a POST, and a server that restarted while DEMI was busy
        leaves stale connections in the pool; failing the request for that would blame a
        healthy server. The retry happens only when no response byte was received.
        """
        url = self.url + "/v1/chat/completions"
        try:
            return await clock.read(
                self._get_session().post(url, data=body, headers=self._headers)
            )
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            if isinstance(exc, aiohttp.ClientConnectorError):
                raise  # nothing is listening: not a stale connection
            return await clock.read(
                self._get_session().post(
                    url, data=body, headers=self._headers,
                )
            )

    # -- embeddings --------------------------------------------------------------------
    async def embed(self, texts: list[str], model: str) -> Embeddings:
        """``POST /v1/embeddings``, bounded by the first-token timeout."""
        body = json.dumps({"model": model, "input": texts})
        with self._errors(f"no embeddings within {self.first_token_timeout:g}s"):
            async with asyncio.timeout(self.first_token_timeout):
                async with self._get_session().post(
                    self.url + "/v1/embeddings", data=body, headers=self._headers
                ) as resp:
                    raw = await resp.read()
                    if resp.status >= 400:
                        raise self._map_status(resp.status, raw, resp.headers, model)
                    data = json.loads(raw)
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list) or len(entries) != len(texts) or not all(
            isinstance(e, dict) and isinstance(e.get("embedding"), list) for e in entries
        ):
            raise malformed(self.name, self.display_name)
        entries = sorted(entries, key=lambda e: e.get("index") or 0)
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return Embeddings([e["embedding"] for e in entries], str(data.get("model") or model),
                          self.name, usage.get("prompt_tokens"))

    # -- errors ------------------------------------------------------------------------
    def _choice(
        self, choice: object, fragments: dict[int, dict[str, Any]]
    ) -> tuple[str, str | None]:
        """(text, finish reason) of one streamed choice; tool-call fragments are folded into
        ``fragments``. A wrong shape is a malformed reply."""
        if not isinstance(choice, dict):
            raise malformed(self.name, self.display_name)
        delta = choice.get("delta") or {}
        text = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(delta, dict) and delta.get("tool_calls") and not add_fragment(
            fragments, delta["tool_calls"]
        ):
            raise malformed(self.name, self.display_name)
        reason = choice.get("finish_reason")
        if not isinstance(text, str | None) or not isinstance(reason, str | None):
            raise malformed(self.name, self.display_name)
        return text or "", reason

    def _map_status(
        self, status: int, body: bytes, headers: Any, model: str
    ) -> ProviderError | RequestError:
        return map_status(
            self.name, self.display_name, status, body, headers,
            not_found=f"model '{model}' not available: {{text}}",
        )

    # -- health ------------------------------------------------------------------------
    async def health(self) -> HealthReport:
        """Healthy when the server lists a model (the configured one, if one is configured)."""
        start = time.perf_counter()
        try:
            models = tuple(await self._available_models())
        except (ProviderError, RequestError) as exc:
            loading = isinstance(exc, ProviderBusy)
            return HealthReport(
                healthy=False, latency=time.perf_counter() - start, error=str(exc),
                loading=loading,
            )
        latency = time.perf_counter() - start
        if self.configured_model:
            present = self.configured_model in models
            error = None if present else f"model '{self.configured_model}' is not available"
        else:
            present = bool(models)
            error = None if present else f"{self.display_name} has no model loaded"
            if present:
                self.model = models[0]
        if present and not self._asked_slots:
            await self._learn_slots()
        return HealthReport(
            healthy=present, latency=latency, models=models, model_present=present, error=error
        )

    async def _learn_slots(self) -> None:
        """Ask once how many requests the server serves at once: llama.cpp's server says
        ``total_slots`` in ``/props``; others answer 404 (or something else) and keep no cap."""
        self._asked_slots = True
        try:
            props = await self._get_json("/props", self.health_timeout)
        except (ProviderError, RequestError, ValueError):
            return
        slots = props.get("total_slots") if isinstance(props, dict) else None
        if isinstance(slots, int) and not isinstance(slots, bool) and slots > 0:
            self.reported_concurrency = slots

    async def _available_models(self) -> list[str]:
        """Models to consider for health; LM Studio overrides this to prefer loaded ones."""
        return await self._list_models(self.health_timeout)
