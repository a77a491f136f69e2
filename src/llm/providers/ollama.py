"""Ollama, through the official ``ollama`` package's ``AsyncClient``.

Why the care below: the client has no timeout by default (a hung server would hang DEMI),
it raises three unrelated error types (``ResponseError``, builtin ``ConnectionError``, raw
``httpx`` errors from streaming calls), and Ollama silently truncates prompts longer than
its small default context unless ``options.num_ctx`` is sent. All of that is handled here,
once, so the router only sees DEMI's own errors: HTTP statuses in the response hook
(``map_status``, where Retry-After is still known), every foreign exception through
:data:`OLLAMA_ERRORS` at the provider's one boundary (``_errors``).

What only an Ollama server answers (model management, preload and unload) the conductor
sends through :meth:`OllamaInference.forward`: the same pooled session, the same table.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import ollama
import pydantic

from ...core.config import OllamaConfig
from ..errors import (
    CannotExpress,
    ModelNotFound,
    ProviderError,
    ProviderResponseError,
    ProviderTimeout,
    RequestError,
)
from ..types import ChatChunk, ChatRequest, Embeddings, HealthReport, ToolCall
from ._aiohttp_transport import AiohttpTransport
from ._errors import (
    SHARED_ERRORS,
    Boundary,
    ErrorBoundary,
    Meaning,
    error_text,
    garbled,
    hinted,
    malformed,
    map_errors,
    map_status,
    row,
    says,
    unreachable,
)
from ._timing import ReplyClock
from ._translate import new_call_id, to_ollama
from .base import POOL_LIMIT, Provider, Timeouts


def _not_found(model: str) -> str:
    return f"model '{model}' not found (run: ollama pull {model})"


def _ollama_said(exc: ollama.ResponseError, where: Boundary) -> ProviderError | RequestError:
    """Ollama's own error: a line in the middle of a streamed 200 (``status_code`` -1), or
    a status the response hook did not see first."""
    text = str(exc.error).strip()[:300]
    if exc.status_code == -1:
        if says(text, Meaning.NO_MODEL):
            return ModelNotFound(where.provider, _not_found(where.model), status=404)
        return ProviderResponseError(where.provider, f"error in the middle of the reply: {text}")
    return map_status(where.provider, where.display_name, exc.status_code, text, None,
                      not_found=_not_found(where.model))


def _client_refused(exc: ollama.RequestError, where: Boundary) -> ProviderError | RequestError:
    """Older ``ollama`` clients (0.4) refuse a request without a model before sending it:
    what the server's 400 ``model is required`` would have said."""
    return map_status(where.provider, where.display_name, 400, str(exc.error), None,
                      not_found=_not_found(where.model))


def _httpx_timed_out(exc: httpx.TimeoutException, where: Boundary) -> ProviderTimeout:
    return ProviderTimeout(where.provider, f"timed out ({type(exc).__name__})")


def _httpx_cut(exc: httpx.HTTPError, where: Boundary) -> ProviderResponseError:
    return ProviderResponseError(where.provider, "connection closed in the middle of the reply")


OLLAMA_ERRORS = SHARED_ERRORS.extended((
    row(ollama.ResponseError, _ollama_said),
    row(ollama.RequestError, _client_refused),
    # httpx raises its own only where it works itself (decoding, an injected transport);
    # under AiohttpTransport the network's errors are aiohttp's, in the shared rows.
    row(httpx.TimeoutException, _httpx_timed_out),
    row(httpx.RemoteProtocolError, _httpx_cut),
    row(httpx.ReadError, _httpx_cut),
    row(httpx.HTTPError, unreachable),
    row(pydantic.ValidationError, garbled),  # a reply line without the fields it promises
))
"""What the ``ollama`` client adds to the shared table: its own errors, httpx's, pydantic's."""


def normalize_model_name(name: str) -> str:
    """Ollama treats a name without a tag as ``:latest``.

    >>> normalize_model_name("llama3.2")
    'llama3.2:latest'
    >>> normalize_model_name("llama3.2:1b")
    'llama3.2:1b'
    """
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _requested_model(request: httpx.Request) -> str | None:
    """The model a chat request asked for (None for requests without a JSON body)."""
    try:
        body = json.loads(request.content or b"null")
    except ValueError:
        return None
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else None


_CAPABILITY_FIELDS = {"tools": "tools", "vision": "images", "thinking": "think",
                      "images": "images"}


def _unsupported_capability(body: bytes) -> str | None:
    """The request field behind Ollama's 400 "<model> does not support <capability>".

    >>> _unsupported_capability(b'{"error":"gemma:2b does not support tools"}')
    'tools'
    >>> _unsupported_capability(b'{"error":"invalid options"}') is None
    True
    """
    rest = hinted(error_text(body), Meaning.LACKS_FEATURE)
    word = rest.split()[:1] if rest is not None else []
    return _CAPABILITY_FIELDS.get(word[0].strip(".,\"'")) if word else None


@dataclass(frozen=True, slots=True)
class Forwarded:
    """An answer of the Ollama server passed on as it is (see :meth:`OllamaInference.forward`)."""

    status: int
    content_type: str | None
    body: AsyncIterator[bytes]
    """The body chunk by chunk as Ollama writes it; a failed read raises a ProviderError."""


class _Body:
    """Iterates an upstream body; each read inside the provider's error boundary."""

    __slots__ = ("_content", "_errors")

    def __init__(self, content: aiohttp.StreamReader, errors: ErrorBoundary) -> None:
        self._content = content
        self._errors = errors

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        with self._errors:
            piece = await self._content.readany()
        if not piece:
            raise StopAsyncIteration
        return piece


class OllamaInference(Provider):
    """The guide's primary provider."""

    kind = "ollama"

    def __init__(
        self,
        cfg: OllamaConfig,
        timeouts: Timeouts,
        *,
        name: str = "ollama",
        display_name: str = "Ollama",
        transport: AiohttpTransport | None = None,
    ) -> None:
        super().__init__(
            name, display_name, model=cfg.model, context_window=cfg.context_window,
            base_url=cfg.base_url, region=cfg.region,
        )
        self.cfg = cfg
        self.embedding_model = cfg.embedding_model
        self.first_token_timeout = cfg.timeout
        self.read_idle_timeout = timeouts.read_idle
        self.health_timeout = timeouts.health
        self.connect_timeout = timeouts.connect
        # read=None: the first-token and idle bounds are enforced per read by ReplyClock,
        # which knows which of the two applies; httpx only bounds connecting (and, as
        # ever, sending: a request body is small, so the first-token bound covers it).
        timeout = httpx.Timeout(
            connect=timeouts.connect, read=None, write=cfg.timeout, pool=timeouts.connect
        )
        self._transport = transport or AiohttpTransport(timeouts.connect, POOL_LIMIT)
        self._client = ollama.AsyncClient(
            host=cfg.base_url,
            timeout=timeout,
            transport=self._transport,
            event_hooks={"response": [self._check_status]},
        )

    def _errors(self, timeout: str | Callable[[], str], model: str) -> ErrorBoundary:
        """The one place Ollama's foreign errors become DEMI's (:data:`OLLAMA_ERRORS`)."""
        return map_errors(self, OLLAMA_ERRORS, timeout, model=model)

    async def _check_status(self, response: httpx.Response) -> None:
        """Map an HTTP error status here, where its headers (Retry-After) are still known.

        The ``ollama`` client would turn it into a ``ResponseError`` that keeps only the text.
        Raised inside httpx, the DEMI error passes every boundary on its way out untouched.
        """
        if response.status_code >= 400:
            body = await response.aread()
            model = _requested_model(response.request) or self.cfg.model
            if response.status_code == 400:
                unsupported = _unsupported_capability(body)
                if unsupported is not None:  # the model, not the caller: another may take it
                    raise CannotExpress(unsupported, f"Ollama's model {model} does not "
                                        f"support {unsupported}")
            raise map_status(
                self.name, self.display_name, response.status_code, body, response.headers,
                not_found=_not_found(model),
            )

    def _options(self, request: ChatRequest, extra: dict[str, Any]) -> dict[str, Any]:
        options: dict[str, Any] = {
            "num_ctx": self.context_window,
            "temperature": self.cfg.temperature if request.temperature is None
            else request.temperature,
        }
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if request.stop:
            options["stop"] = list(request.stop)
        options.update(extra)
        return options

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:  # type: ignore[override]
        """Stream from ``/api/chat``; see :class:`Provider` for the contract."""
        model = request.model or self.cfg.model
        clock = ReplyClock(self.first_token_timeout, self.read_idle_timeout)
        iterator: AsyncIterator[Any] | None = None
        calls: list[ToolCall] = []
        said = to_ollama(request)
        try:
            with self._errors(clock.describe, model):
                try:
                    # With stream=True nothing is sent yet: a ValidationError here is about
                    # the request DEMI built, which this client cannot express; never
                    # Ollama's fault (a reply's ValidationError is, in OLLAMA_ERRORS).
                    parts = await self._client.chat(
                        model=model,
                        messages=said.messages,
                        tools=said.tools,
                        format=said.format,
                        think=said.think,
                        stream=True,
                        options=self._options(request, said.options),
                        keep_alive=self.cfg.keep_alive if said.keep_alive is None
                        else said.keep_alive,
                    )
                except pydantic.ValidationError as exc:
                    err = exc.errors(include_url=False)[0]
                    where = ".".join(str(p) for p in err["loc"])
                    raise CannotExpress(where or "messages", "the ollama client rejects it: "
                                        + err["msg"]) from None
                iterator = parts.__aiter__()
                while True:
                    try:
                        part = await clock.read(iterator.__anext__())
                    except StopAsyncIteration:
                        break
                    text = (part.message.content or "") if part.message is not None else ""
                    if part.message is not None and part.message.tool_calls:
                        clock.started = True
                        calls.extend(
                            ToolCall(id=new_call_id(), name=c.function.name,
                                     arguments=json.dumps(dict(c.function.arguments)))
                            for c in part.message.tool_calls
                        )
                    if part.done:
                        final = ChatChunk(
                            text=text,
                            done=True,
                            model=part.model or model,
                            finish_reason="tool_calls" if calls else part.done_reason or "stop",
                            prompt_tokens=part.prompt_eval_count,
                            completion_tokens=part.eval_count,
                            tool_calls=tuple(calls),
                        )
                        # Read to the end of the body so httpx returns the connection to its
                        # pool; stopping at the done line would cost a new TCP connection per
                        # reply.
                        while True:
                            try:
                                await clock.read(iterator.__anext__())
                            except StopAsyncIteration:
                                break
                        yield final
                        return
                    if text:
                        clock.started = True
                    yield ChatChunk(text=text)
        finally:
            clock.close()
            # Close the HTTP stream now, not whenever the generator is collected.
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
        raise ProviderResponseError(self.name, "the reply ended before Ollama said it was done")

    async def embed(self, texts: list[str], model: str) -> Embeddings:
        """``POST /api/embed``, bounded by the first-token timeout (a cold load included)."""
        with self._errors(f"no embeddings within {self.first_token_timeout:g}s", model):
            async with asyncio.timeout(self.first_token_timeout):
                reply = await self._client.embed(model=model, input=texts,
                                                 keep_alive=self.cfg.keep_alive)
        vectors = [list(v) for v in reply.embeddings]
        if len(vectors) != len(texts):
            raise malformed(self.name, self.display_name)
        return Embeddings(vectors, reply.model or model, self.name, reply.prompt_eval_count)

    async def health(self) -> HealthReport:
        """``GET /api/tags``; healthy only if the configured model is installed."""
        start = time.perf_counter()
        timeout = f"health check timed out after {self.health_timeout:g}s"
        try:
            with self._errors(timeout, self.cfg.model):
                async with asyncio.timeout(self.health_timeout):
                    listing = await self._client.list()
        except (ProviderError, RequestError) as exc:
            return HealthReport(healthy=False, latency=time.perf_counter() - start, error=str(exc))
        latency = time.perf_counter() - start
        names = tuple(m.model or "" for m in listing.models)
        wanted = normalize_model_name(self.cfg.model)
        present = any(normalize_model_name(n) == wanted for n in names if n)
        if not present:
            return HealthReport(
                healthy=False, latency=latency, models=names, model_present=False,
                error=_not_found(self.cfg.model),
            )
        return HealthReport(healthy=True, latency=latency, models=names, model_present=True)

    async def warm(self, keep_for: float) -> bool:
        """Ollama's preload: an empty chat with ``keep_alive`` loads the model, no reply.

        Every call resets Ollama's unload timer, so calling more often than ``keep_for``
        keeps the model loaded indefinitely. A cold load may take long: bounded by the
        first-token timeout. Failures (down, no such model) are the health check's business;
        the standby loop logs them at DEBUG.
        """
        try:
            with self._errors("warm-up timed out", self.cfg.model):
                async with asyncio.timeout(self.first_token_timeout):
                    await self._client.chat(model=self.cfg.model, messages=[],
                                            keep_alive=f"{max(1, round(keep_for))}s")
        except (ProviderError, RequestError):
            return False
        return True

    @asynccontextmanager
    async def forward(
        self, method: str, path: str, body: bytes | AsyncIterable[bytes],
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[Forwarded]:
        """Send ``body`` to ``path`` on this Ollama server as it is; yield its answer raw.

        ``body`` is bytes, or a stream of them (a blob upload, of any size); ``headers``
        default to a JSON content type.

        For what only an Ollama server answers (model management, preload and unload): over
        the same pooled session as chat and through the same error table, so "Ollama is
        down" reads alike everywhere. Failing before the status line raises a ProviderError
        here; failing mid-body raises one from ``body``. The upstream response is released
        on every exit, a cancellation or the caller's own error included, and nothing is
        caught on the way.
        """
        errors = self._errors(
            f"{self.display_name} did not connect within {self.connect_timeout:g}s",
            self.cfg.model,
        )
        with errors:
            upstream = await self._transport.send(
                method, self.cfg.base_url + path,
                dict(headers) if headers is not None else {"Content-Type": "application/json"},
                body)
        try:
            yield Forwarded(upstream.status, upstream.headers.get("Content-Type"),
                            _Body(upstream.content, errors))
        finally:
            upstream.release()

    async def close(self) -> None:
        await self._client.close()
