"""The embedded engine's process: ``python -m src.llm.engine.child SETTINGS_JSON``.

Runs llama.cpp's OpenAI-compatible server (``llama_cpp.server``) for one GGUF model, with
three additions that make it safe to supervise:

* **It dies with its parent.** Its standard input is a pipe whose other end only DEMI
  holds; when DEMI exits, even by SIGKILL, the kernel closes that end, the read here returns
  end-of-file, and this process exits. No orphan keeps the model's memory.
* **It checks itself before saying ready.** After loading, it generates one token. A build
  that does not fit this CPU (an illegal instruction) dies here, at start, where the
  supervisor can report it with the fix, rather than at a user's first message.
* **It reports on a status pipe**, one JSON object per line (``ready`` or ``failed``), on a
  file descriptor of its own: llama.cpp and the server print to stdout and stderr freely.

The listening socket is bound by the parent and inherited, so the port is known before the
child starts and no other process can take it in between.

The bundled model is a *base* model with no chat template; the ``demi-base`` chat handler
renders the conversation with :func:`~src.llm.providers.gguf.render_prompt`, drops the
oldest turns until the prompt leaves room for the reply, and stops at the next turn label.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

HANDLER_NAME = "demi-base"


def _status(fd: int, **event: Any) -> None:
    """Write one status line to the parent (best effort: the parent may be gone)."""
    try:
        os.write(fd, (json.dumps(event) + "\n").encode("utf-8"))
    except OSError:
        os._exit(0)


def _exit_with_parent() -> None:
    """Exit as soon as standard input (a pipe held only by DEMI) reaches end-of-file."""

    def watch() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        os._exit(0)

    threading.Thread(target=watch, name="demi-parent-watch", daemon=True).start()


def _register_handler(llama_cpp: Any, reply_tokens: int) -> None:
    """Register the ``demi-base`` chat handler (prompt rendering, fitting, stop strings)."""
    formats: Any = importlib.import_module("llama_cpp.llama_chat_format")

    from ..providers.gguf import STOP_STRINGS, render_prompt

    def formatter(messages: list[dict[str, Any]], **_: Any) -> Any:
        return formats.ChatFormatterResponse(
            prompt=render_prompt(messages).render(), stop=list(STOP_STRINGS)
        )

    base = formats.chat_formatter_to_chat_completion_handler(formatter)

    def handler(*, llama: Any, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        wanted = kwargs.get("max_tokens") or reply_tokens
        fitted, prompt_tokens = _fit(llama, messages, wanted)
        result = base(llama=llama, messages=fitted, **kwargs)
        if kwargs.get("stream"):
            return _with_usage(llama, result, prompt_tokens)
        return result

    formats.LlamaChatCompletionHandlerRegistry().register_chat_completion_handler(
        HANDLER_NAME, handler, overwrite=True
    )


def _with_usage(llama: Any, chunks: Iterator[dict[str, Any]], prompt_tokens: int) -> Any:
    """Pass a reply stream through, then add the usage chunk llama.cpp's server leaves out.

    The completion count re-tokenizes the text sent (stop strings excluded), so it can
    differ from the tokens sampled by one or two where a token was split at a stop string.
    """
    text: list[str] = []
    last: dict[str, Any] = {}
    for chunk in chunks:
        for choice in chunk.get("choices") or ():
            text.append((choice.get("delta") or {}).get("content") or "")
        last = chunk
        yield chunk
    reply = "".join(text)
    completion = len(llama.tokenize(reply.encode("utf-8"), add_bos=False)) if reply else 0
    yield {
        "id": last.get("id"), "object": "chat.completion.chunk", "created": last.get("created"),
        "model": last.get("model"), "choices": [],
        "usage": {
            "prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        },
    }


def _fit(
    llama: Any, messages: list[dict[str, Any]], reply_tokens: int
) -> tuple[list[dict[str, Any]], int]:
    """Drop the oldest non-system turns until the prompt leaves room for the reply.

    Returns the messages kept and the prompt's size in tokens.

    DEMI's router fits conversations before they get here (by estimate); this is the exact
    guard. If the last turn alone is too long, its beginning is cut.
    """
    from ..providers.gguf import render_prompt

    ctx = llama.n_ctx()
    budget = max(ctx - reply_tokens, ctx // 2)

    def size(msgs: list[dict[str, Any]]) -> int:
        text = render_prompt(msgs).render()
        return len(llama.tokenize(text.encode("utf-8"), add_bos=True))

    system = [m for m in messages if m.get("role") == "system"]
    turns = [m for m in messages if m.get("role") != "system"]
    while len(turns) > 1 and size(system + turns) > budget:
        turns.pop(0)
    last = dict(turns[-1]) if turns else None
    while last is not None and size([*system, last]) > budget:
        content = str(last.get("content") or "")
        if len(content) < 2:
            break
        last["content"] = content[len(content) // 4 :]
    fitted = [*system, *turns[:-1], *([last] if last is not None else [])]
    return fitted, size(fitted)


def main(argv: list[str]) -> int:
    settings = json.loads(argv[1])
    status_fd = int(settings["status_fd"])
    listen_fd = int(settings["listen_fd"])
    _exit_with_parent()
    started = time.perf_counter()
    try:
        from ..providers.gguf import model_label, resolve_model_file

        path = resolve_model_file(settings.get("model_path"), settings.get("cache_dir"))
    except FileNotFoundError as exc:
        _status(status_fd, event="failed", missing=True, reason=str(exc))
        return 3
    except (ImportError, OSError, ValueError) as exc:
        _status(status_fd, event="failed", reason=f"the model file could not be prepared: {exc}")
        return 3

    try:
        import llama_cpp
        import uvicorn
        from llama_cpp.server.app import create_app
        from llama_cpp.server.settings import ModelSettings, ServerSettings
    except ImportError as exc:
        _status(status_fd, event="failed", reason=f"llama-cpp-python[server] is missing: {exc}")
        return 4

    _register_handler(llama_cpp, int(settings["max_tokens"]))
    label = model_label(path)
    try:
        app = create_app(
            server_settings=ServerSettings(interrupt_requests=False),
            model_settings=[
                ModelSettings(
                    model=str(path),
                    model_alias=label,
                    n_ctx=int(settings["context_window"]),
                    n_threads=int(settings["threads"]),
                    n_threads_batch=int(settings["threads"]),
                    chat_format=HANDLER_NAME,
                    verbose=False,
                )
            ],
        )
    except (ValueError, RuntimeError, OSError) as exc:  # llama.cpp's "failed to load model"
        _status(status_fd, event="failed", reason=f"the model failed to load: {exc}")
        return 5
    loaded = time.perf_counter()

    # The self-check: one real token through the CPU kernels, from a chat rendered the way
    # every request is. An illegal instruction kills the process right here, and the
    # supervisor words the fix. It also leaves the shared preamble in llama.cpp's prompt
    # cache, so the first real request does not pay for reading it.
    from llama_cpp.server import app as server_app

    llama = server_app._llama_proxy(label)  # type: ignore[misc]
    llama.create_chat_completion(
        messages=[{"role": "user", "content": "Hello"}], max_tokens=1, temperature=0.0
    )
    checked = time.perf_counter()

    sock = socket.socket(fileno=listen_fd)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_graceful_shutdown=2,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    _status(
        status_fd, event="ready", model=label, path=str(path),
        load_s=round(loaded - started, 3), check_s=round(checked - loaded, 3),
    )
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
