"""``chat``: a conversation in the terminal, to try DEMI's failover by hand.

Lines are read with plain ``input()`` so the command works the same from a keyboard and from
a pipe (the tests drive it through stdin). Each read runs in its own daemon thread: the event
loop stays free, and a Ctrl-C while waiting for input is not held up by a thread blocked in
``read()``, which the default executor would wait for at exit.

History: the session keeps every completed exchange and sends it all; the core trims it to
each provider's context window per request, so the list itself is never cut here. When a
request fails, the user's line is dropped too: the history never holds a question without
its answer, and asking again does not send the question twice.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from typing import Annotated

import typer

from ...llm import (
    AllProvidersFailed,
    ChatResult,
    RequestError,
    StreamInterrupted,
    UnifiedLLMInference,
    UnknownProviderError,
)
from .common import (
    EXIT_OK,
    ConfigOpt,
    LMStudioUrlOpt,
    LogLevelOpt,
    NoFallbackOpt,
    OllamaUrlOpt,
    Options,
    command_options,
    is_tty,
    load,
    run,
)
from .status import render

SystemOpt = Annotated[
    str | None,
    typer.Option(
        "--system",
        metavar="TEXT",
        help="A system message kept at the top of the conversation (survives /reset).",
    ),
]
PinOpt = Annotated[
    str | None,
    typer.Option(
        "--provider",
        metavar="NAME",
        help="Start pinned to NAME (it also becomes the primary); /auto lifts the pin.",
    ),
]

HELP = """\
Type a message and press Enter. Commands:
  /provider NAME   answer with NAME only (no fallback); /provider alone shows the choice
  /auto            automatic provider selection with fallback
  /status          check the providers now and show the table
  /reset           forget the conversation
  /help            this text
  /quit            leave (Ctrl-D and Ctrl-C work too)"""

Message = dict[str, str]


def chat(
    ctx: typer.Context,
    system: SystemOpt = None,
    provider: PinOpt = None,
    config: ConfigOpt = None,
    log_level: LogLevelOpt = None,
    ollama_url: OllamaUrlOpt = None,
    lmstudio_url: LMStudioUrlOpt = None,
    no_fallback: NoFallbackOpt = False,
) -> None:
    """Chat in the terminal; the provider that answered is shown after each reply."""
    opts = command_options(
        ctx,
        Options(
            config=config,
            log_level=log_level,
            ollama_url=ollama_url,
            lmstudio_url=lmstudio_url,
            no_fallback=no_fallback,
            provider=provider,
        ),
    )
    cfg, logger = load(opts, quiet=True)

    async def session() -> int:
        async with UnifiedLLMInference(cfg, logger) as llm:
            if opts.provider is not None:
                llm.force_provider(opts.provider)
            await Session(llm, system).loop()
        return EXIT_OK

    code = run(session())
    # Ctrl-C is how people leave a chat, not a failure.
    raise typer.Exit(EXIT_OK if code == 130 else code)


class Session:
    """One conversation: the history, the command dispatch and the printing."""

    def __init__(self, llm: UnifiedLLMInference, system: str | None) -> None:
        self.llm = llm
        self.system: list[Message] = [{"role": "system", "content": system}] if system else []
        self.history: list[Message] = []
        self.interactive = is_tty(sys.stdin)
        self.styled = is_tty(sys.stdout)
        self.commands: dict[str, Callable[[str], object]] = {
            "/provider": self._provider,
            "/auto": self._auto,
            "/reset": self._reset,
            "/help": lambda _: say(HELP),
        }

    async def loop(self) -> None:
        """Read, answer, repeat until /quit or end of input."""
        if self.interactive:
            say("DEMI chat. /help lists the commands, /quit leaves.")
        while True:
            line = await read_line("you> " if self.interactive else "")
            if line is None:
                if self.interactive:
                    say("")  # Ctrl-D: leave the shell prompt on a line of its own
                break
            line = line.strip()
            if not line:
                continue
            if line.startswith("/"):
                name, _, arg = line.partition(" ")
                if name in ("/quit", "/exit"):
                    break
                if name == "/status":
                    say(render(list((await self.llm.health(refresh=True)).values())))
                elif name in self.commands:
                    self.commands[name](arg.strip())
                else:
                    complain(f"unknown command {name}; /help lists the commands")
                continue
            await self.turn(line)

    async def turn(self, text: str) -> None:
        """Send the conversation plus ``text``; keep both turns only if the answer completes."""
        user = {"role": "user", "content": text}
        try:
            result = await self._stream([*self.system, *self.history, user])
        except (AllProvidersFailed, RequestError, StreamInterrupted) as exc:
            complain(str(exc))
            return
        self.history += [user, {"role": "assistant", "content": result.text}]
        tag = f"[{result.provider} · {result.model}{' · fallback' if result.fallback_used else ''}]"
        say(f"\x1b[2m{tag}\x1b[0m" if self.styled else tag)

    async def _stream(self, messages: list[Message]) -> ChatResult:
        reply = await self.llm.open_stream(messages)
        try:
            async for chunk in reply:
                if chunk.text:
                    sys.stdout.write(chunk.text)
                    sys.stdout.flush()
        finally:
            if reply.text:  # end the (possibly partial) answer before the tag or the error
                sys.stdout.write("\n")
                sys.stdout.flush()
        return reply.result()

    def _provider(self, name: str) -> None:
        if not name:
            pinned = self.llm.forced_provider
            say(
                f"pinned to {pinned}"
                if pinned
                else f"automatic selection; now using {self.llm.active_provider}"
            )
            return
        try:
            self.llm.force_provider(name)
        except UnknownProviderError as exc:
            complain(
                f"unknown provider {name!r}; choose one of {', '.join(exc.known)} "
                "(or /auto for automatic selection)"
            )
            return
        say(f"pinned to {name}: no fallback until /auto")

    def _auto(self, _: str) -> None:
        self.llm.force_provider(None)
        say(f"automatic selection; now using {self.llm.active_provider}")

    def _reset(self, _: str) -> None:
        self.history.clear()
        say("conversation cleared")


async def read_line(prompt: str) -> str | None:
    """One line from stdin (None at end of input), read without blocking the event loop.

    A daemon thread per line rather than ``asyncio.to_thread``: see the module docstring.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str | None] = loop.create_future()

    def deliver(value: str | None) -> None:
        if not done.done():
            done.set_result(value)

    def worker() -> None:
        try:
            value: str | None = input(prompt)
        except (EOFError, OSError, ValueError):
            value = None
        try:
            loop.call_soon_threadsafe(deliver, value)
        except RuntimeError:
            pass  # the loop closed while this thread waited (Ctrl-C); nobody wants the line

    threading.Thread(target=worker, name="demi-chat-stdin", daemon=True).start()
    return await done


def say(text: str) -> None:
    """A line on stdout, flushed so it appears before the next prompt."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def complain(text: str) -> None:
    """One error line on stderr; the chat carries on."""
    sys.stderr.write(f"error: {text}\n")
    sys.stderr.flush()
