"""Serving the conductor: :func:`serve` runs the HTTP API until SIGINT/SIGTERM.

``python -m src.conductor serve`` (the typer CLI, ``commands/serve.py``) calls
:func:`serve`; it is the one command line.

Shutdown, on the first SIGINT or SIGTERM: stop accepting connections, let in-flight
requests and streams finish for up to ``conductor.shutdown_grace`` seconds (then cancel
them), close the LLM's sessions, return 0. A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from ...core.config import DemiConfig
from ...core.tasks import cancel_and_wait
from ...llm import UnifiedLLMInference
from .app import LOGGER_NAME, STATE_KEY, create_app
from .guard import check_exposure

__all__ = ["LOGGER_NAME", "STATE_KEY", "create_app", "example_curl", "serve"]

def example_curl(url: str, model: str = "demi") -> str:
    """One request a user can paste to check the server answers."""
    return (
        f"curl {url}/v1/chat/completions -H 'Content-Type: application/json' "
        f"-d '{{\"model\": \"{model}\", \"messages\": [{{\"role\": \"user\", "
        f"\"content\": \"Hello\"}}]}}'"
    )


def _public_url(host: str, port: int) -> str:
    """The URL to print: a wildcard bind is reached through loopback."""
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


async def serve(
    config: DemiConfig,
    logger: logging.Logger,
    *,
    ready: Callable[[str], None] | None = None,
) -> int:
    """Serve until SIGINT/SIGTERM; the process exit code.

    ``ready(url)`` is called once the server listens (by default the URL and an example
    ``curl`` request are printed). Returns 0 after a clean shutdown, 1 when the address
    cannot be bound, 128+signal when a second signal cut the shutdown short. Raises
    ConfigError when the configuration yields no usable provider chain, or asks for a
    non-loopback address without ``conductor.api_key`` (before anything starts).
    """
    conductor = config.conductor
    check_exposure(conductor.host, conductor.api_key)
    llm = UnifiedLLMInference(config, logger.getChild("llm"))
    app = create_app(llm, config, manage_llm=True, logger=logger.getChild("conductor"))
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, handler_cancellation=True,
        shutdown_timeout=conductor.shutdown_grace,
        # A client gets header_timeout seconds to send a whole request head (aiohttp arms
        # this timer at connect and after each answer, and closes a connection still
        # waiting for its head when it fires): a slow client cannot hold a connection.
        keepalive_timeout=conductor.header_timeout,
        max_line_size=conductor.max_header_bytes,
        max_field_size=conductor.max_header_bytes,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[int] = []
    drain: asyncio.Task[None] | None = None

    def on_signal(signum: int) -> None:
        received.append(signum)
        name = signal.Signals(signum).name
        if len(received) == 1:
            logger.info(
                "%s received: finishing in-flight requests (up to %gs), then stopping; "
                "send it again to stop now", name, conductor.shutdown_grace,
            )
            stop.set()
        else:
            logger.warning("%s received again: stopping now", name)
            if drain is not None:
                drain.cancel()

    _install_signal_handlers(loop, on_signal)
    try:
        if not await _until_stopped(runner.setup(), stop):  # starts the LLM: health checks
            return 0
        site = web.TCPSite(runner, conductor.host, conductor.port)
        try:
            await site.start()
        except OSError as exc:
            logger.error("Cannot listen on %s:%d: %s", conductor.host, conductor.port,
                         exc.strerror or exc)
            return 1
        port = runner.addresses[0][1] if runner.addresses else conductor.port
        url = _public_url(conductor.host, port)
        logger.info("Serving the OpenAI, Anthropic and Ollama APIs on %s", url)
        if ready is not None:
            ready(url)
        else:
            print(f"DEMI conductor listening on {url}", flush=True)
            print(f"Try: {example_curl(url, _first_alias(config))}", flush=True)
        await stop.wait()
        drain = asyncio.ensure_future(runner.cleanup())  # stop listening, drain, close LLM
        await asyncio.wait([drain])
        if drain.cancelled():
            await _force_stop(runner, llm)
            return 128 + received[-1]
        drain.result()
        logger.info("DEMI conductor stopped")
        return 0
    finally:
        _remove_signal_handlers(loop)
        if drain is None:  # left before the drain (signal during start-up, bind error, bug)
            await runner.cleanup()
        await llm.close()  # idempotent; covers start-up cut short and the forced stop


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _install_signal_handlers(
    loop: asyncio.AbstractEventLoop, handler: Callable[[int], None]
) -> None:
    for sig in _SIGNALS:
        try:
            loop.add_signal_handler(sig, handler, sig)
        except NotImplementedError:  # Windows event loops: plain handlers, hopped to the loop
            signal.signal(sig, lambda s, _f: loop.call_soon_threadsafe(handler, s))


def _remove_signal_handlers(loop: asyncio.AbstractEventLoop) -> None:
    for sig in _SIGNALS:
        try:
            loop.remove_signal_handler(sig)
        except NotImplementedError:
            signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT
                          else signal.default_int_handler)


def _first_alias(config: DemiConfig) -> str:
    aliases = config.conductor.model_aliases
    return aliases[0] if aliases else config.llm.ollama.model


async def _until_stopped(aw: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run ``aw``; False (and ``aw`` cancelled) if a stop signal comes first."""
    task = asyncio.ensure_future(aw)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(waiter)
    if task.done():
        task.result()
        return True
    await cancel_and_wait(task)
    return False


async def _force_stop(runner: web.AppRunner, llm: UnifiedLLMInference) -> None:
    """After a second signal: drop every connection and close the sessions, no waiting."""
    server = runner.server
    if server is not None:
        for conn in list(server.connections):
            conn.force_close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(llm.close(), 2.0)  # a hung upstream must not hold the exit
