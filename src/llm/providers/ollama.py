"""Ollama, through the official ``ollama`` package's ``AsyncClient``.

Why the care below: the client has no timeout by default (a hung server would hang DEMI),
it raises three unrelated error types (``ResponseError``, builtin ``ConnectionError``, raw
``httpx`` errors from streaming calls), and Ollama silently truncates prompts longer than
its small default context unless ``options.num_ctx`` is sent. All of that is handled here,
once, so the router only sees DEMI's own errors.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import ollama
import pydantic

from src.core.config import OllamaConfig

from ..errors import (
    ModelNotFound,
    ProviderBusy,
    ProviderError,
    ProviderResponseError,
    ProviderTimeout,
    ProviderUnavailable,
    RequestError,
)
from ..provider import Provider
from ..types import ChatChunk, ChatRequest, HealthReport
from ._aiohttp_transport import AiohttpTransport
from ._errors import connection_reason
from ._timing import ReplyClock


def normalize_model_name(name: str) -> str:
    """Ollama treats a name without a tag as ``:latest``.

    >>> normalize_model_name("llama3.2")
    'llama3.2:latest'
    >>> normalize_model_name("llama3.2:1b")
    'llama3.2:1b'
    """
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


class OllamaInference(Provider):
    """The guide's primary provider."""

    kind = "ollama"

    def __init__(
        self,
        cfg: OllamaConfig,
        *,
        connect_timeout: float = 2.0,
        read_idle_timeout: float = 30.0,
        health_timeout: float = 5.0,
        name: str = "ollama",
        display_name: str = "Ollama",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            name, display_name, model=cfg.model, context_window=cfg.context_window,
            base_url=cfg.base_url, region=cfg.region,
        )
        self.cfg = cfg
        self.first_token_timeout = cfg.timeout
        self.read_idle_timeout = read_idle_timeout
        self.health_timeout = health_timeout
        # read=None: the first-token and idle bounds are enforced per read by ReplyClock,
        # which knows which of the two applies; httpx only bounds connecting.
        timeout = httpx.Timeout(
            connect=connect_timeout, read=None, write=30.0, pool=connect_timeout
        )
        self._client = ollama.AsyncClient(
            host=cfg.base_url,
            timeout=timeout,
            transport=transport or AiohttpTransport(connect_timeout),
        )

    def _options(self, request: ChatRequest) -> dict[str, Any]:
        options: dict[str, Any] = {
            "num_ctx": self.context_window,
            "temperature": self.cfg.temperature if request.temperature is None
            else request.temperature,
        }
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if request.stop:
            options["stop"] = list(request.stop)
        options.update(request.options)
        return options

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:  # type: ignore[override]
        """Stream from ``/api/chat``; see :class:`Provider` for the contract."""
        model = request.model or self.cfg.model
        clock = ReplyClock(self.first_token_timeout, self.read_idle_timeout)
        iterator: AsyncIterator[Any] | None = None
        try:
            parts = await self._client.chat(
                model=model,
                messages=list(request.messages),
                stream=True,
                options=self._options(request),
                keep_alive=self.cfg.keep_alive,
            )
            iterator = parts.__aiter__()
            while True:
                try:
                    part = await clock.read(iterator.__anext__())
                except StopAsyncIteration:
                    break
                text = (part.message.content or "") if part.message is not None else ""
                if part.done:
                    final = ChatChunk(
                        text=text,
                        done=True,
                        model=part.model or model,
                        finish_reason=part.done_reason or "stop",
                        prompt_tokens=part.prompt_eval_count,
                        completion_tokens=part.eval_count,
                    )
                    # Read to the end of the body so httpx returns the connection to its
                    # pool; stopping at the done line would cost a new TCP connection per reply.
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
        except (ProviderError, RequestError):
            raise
        except Exception as exc:
            raise self._map_error(exc, clock, model) from exc
        finally:
            clock.close()
            # Close the HTTP stream now, not whenever the generator is collected.
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
        raise ProviderResponseError(self.name, "the reply ended before Ollama said it was done")

    def _map_error(self, exc: BaseException, clock: ReplyClock, model: str) -> Exception:
        """Translate any foreign exception into DEMI's tree (the one place this happens)."""
        if isinstance(exc, TimeoutError):
            return ProviderTimeout(self.name, clock.describe())
        if isinstance(exc, ollama.ResponseError):
            return self._map_status(exc.status_code, str(exc.error), model)
        if isinstance(exc, httpx.TimeoutException):
            return ProviderTimeout(self.name, f"timed out ({type(exc).__name__})")
        if isinstance(exc, (httpx.ConnectError, ConnectionError)):
            return ProviderUnavailable(self.name, connection_reason(exc))
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
            return ProviderResponseError(self.name, "connection closed in the middle of the reply")
        if isinstance(exc, httpx.HTTPError):
            return ProviderUnavailable(self.name, connection_reason(exc))
        if isinstance(exc, (json.JSONDecodeError, pydantic.ValidationError, ValueError)):
            return ProviderResponseError(self.name, "malformed reply from Ollama")
        return ProviderResponseError(self.name, f"unexpected error: {type(exc).__name__}")

    def _map_status(self, status: int, text: str, model: str) -> Exception:
        text = text.strip()[:300]
        if status == 404 or ("not found" in text and "model" in text):
            return ModelNotFound(
                self.name, f"model '{model}' not found (run: ollama pull {model})", status=404
            )
        if status == -1:
            return ProviderResponseError(self.name, f"error in the middle of the reply: {text}")
        if status in (429, 503):
            return ProviderBusy(self.name, f"busy ({status}): {text}", status=status)
        if status == 400:
            return RequestError(f"Ollama rejected the request: {text}", provider=self.name)
        return ProviderResponseError(self.name, f"HTTP {status}: {text}", status=status)

    async def health(self) -> HealthReport:
        """``GET /api/tags``; healthy only if the configured model is installed."""
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self.health_timeout):
                listing = await self._client.list()
        except Exception as exc:
            latency = time.perf_counter() - start
            if isinstance(exc, TimeoutError):
                reason = f"health check timed out after {self.health_timeout:g}s"
            else:
                mapped = self._map_error(exc, ReplyClock(0, 0), self.cfg.model)
                reason = str(mapped)
            return HealthReport(healthy=False, latency=latency, error=reason)
        latency = time.perf_counter() - start
        names = tuple(m.model or "" for m in listing.models)
        wanted = normalize_model_name(self.cfg.model)
        present = any(normalize_model_name(n) == wanted for n in names if n)
        if not present:
            return HealthReport(
                healthy=False, latency=latency, models=names, model_present=False,
                error=f"model '{self.cfg.model}' not found (run: ollama pull {self.cfg.model})",
            )
        return HealthReport(healthy=True, latency=latency, models=names, model_present=True)

    async def close(self) -> None:
        await self._client.close()
