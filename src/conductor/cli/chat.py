"""``chat``: a conversation in the terminal that shows the LLM layer at work.

Lines are read with plain ``input()`` so the command works the same from a keyboard and from
a pipe (the tests drive it through stdin and through a pseudo-terminal). Each read runs in
its own daemon thread: the event loop stays free, and a Ctrl-C while waiting for input is
not held up by a thread blocked in ``read()``, which the default executor would wait for at
exit.

What the layer does is said in plain words as it happens (:class:`Narrator`): a switch of
provider ("Ollama stopped answering (connection refused) — LM Studio is answering",
"Ollama is back — switching to it"), printed at once while the chat waits for input and
after the current reply otherwise, so a reply is never interleaved with anything. The line
after each reply names who wrote it (every provider, when a reply broken mid-way was
continued by the next one); ``/details`` adds the time to the first token and a hedge that
won.

Ctrl-C during a reply stops that reply (its connection is closed) and keeps the chat;
Ctrl-C at the prompt leaves it.

History: the session keeps every completed exchange and sends it all; the core trims it to
each provider's context window per request, so the list itself is never cut here. When a
request fails or is stopped, the user's line is dropped too: the history never holds a
question without its answer, and asking again does not send the question twice.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Annotated, Any

import typer

from ...core.tasks import cancel_and_wait
from ...llm import (
    AllProvidersFailed,
    RequestError,
    StreamInterrupted,
    UnifiedLLMInference,
    UnknownProviderError,
)
from ...llm import ReplyStream as Reply
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
DetailsOpt = Annotated[
    bool,
    typer.Option("--details", help="Show the time to the first token and hedges after each "
                 "reply (/details toggles it)."),
]

HELP = """\
Type a message and press Enter. Commands:
  /provider NAME   answer with NAME only (no fallback); /provider alone shows the choice
  /auto            automatic provider selection with fallback
  /status          check the providers now and show the table
  /details         show (or hide) the first-token time and hedges after each reply
  /reset           forget the conversation
  /help            this text
  /quit            leave (Ctrl-D and Ctrl-C at the prompt work too; Ctrl-C during a reply
                   stops that reply)"""

PLAIN_NAMES = {"LMStudio": "LM Studio"}
"""How people write the names the guide's log lines spell differently."""

Message = dict[str, str]


def chat(
    ctx: typer.Context,
    system: SystemOpt = None,
    provider: PinOpt = None,
    details: DetailsOpt = False,
    config: ConfigOpt = None,
    log_level: LogLevelOpt = None,
    ollama_url: OllamaUrlOpt = None,
    lmstudio_url: LMStudioUrlOpt = None,
    no_fallback: NoFallbackOpt = False,
) -> None:
    """Chat in the terminal; who answered, and every switch of provider, is shown."""
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
            await Session(llm, system, details=details).loop()
        return EXIT_OK

    code = run(session())
    # Ctrl-C at the prompt is how people leave a chat, not a failure.
    raise typer.Exit(EXIT_OK if code == 130 else code)


def plain(display: str) -> str:
    return PLAIN_NAMES.get(display, display)


def switch_words(event: dict[str, Any], display: Callable[[str], str]) -> str | None:
    """A switch of provider in plain words, or None for one the user made (``/provider``)."""
    old, new = plain(display(event["from"])), plain(display(event["to"]))
    if event.get("kind") == "pinned" or old == new:
        return None
    if event.get("kind") == "recovered":
        return f"{new} is back — switching to it"
    why = event.get("why")
    because = f" ({why[:1].lower()}{why[1:]})" if why else ""
    return f"{old} stopped answering{because} — {new} is answering"


class Narrator:
    """Says what the layer does, at a moment that does not cut a reply in two."""

    def __init__(self, llm: UnifiedLLMInference, *, styled: bool, prompt: str) -> None:
        self._llm = llm
        self._styled = styled
        self._prompt = prompt
        self._held: list[str] = []
        self.replying = False
        """True from the moment a message is sent until its last line is printed."""
        self.waiting = False
        """True while the prompt is shown and input() waits."""

    def heard(self, event: dict[str, Any]) -> None:
        """A switch happened (called by the LLM layer, in the event loop)."""
        if self._llm.forced_provider is not None:
            return  # pinned: traffic does not move, whatever the layer would prefer
        words = switch_words(event, self._llm.display)
        if words is None:
            return
        if self.replying:
            self._held.append(words)
        else:
            self._say(words, interrupting=self.waiting)

    def flush(self) -> None:
        """Print what was held back during the reply."""
        held, self._held = self._held, []
        for words in held:
            self._say(words)

    def _say(self, words: str, *, interrupting: bool = False) -> None:
        text = f"\x1b[2m{words}\x1b[0m" if self._styled else words
        if interrupting and self._prompt:
            sys.stdout.write(f"\n{text}\n{self._prompt}")  # the prompt again, under it
            sys.stdout.flush()
        else:
            say(text)


class HeldLogs(logging.Filter):
    """Log lines written during a reply wait until it is printed, then appear below it (a
    warning in the middle of a streaming answer would cut the answer in two)."""

    def __init__(self, narrator: Narrator) -> None:
        super().__init__()
        self._narrator = narrator
        self._held: list[tuple[logging.Handler, logging.LogRecord]] = []
        self._handlers: list[logging.Handler] = []

    def attach(self, logger: logging.Logger) -> None:
        """Hold what ``logger`` writes: its handlers and those it propagates to."""
        node: logging.Logger | None = logger
        while node is not None:
            self._handlers += node.handlers
            node = node.parent if node.propagate else None
        for handler in self._handlers:
            handler.addFilter(_Holder(self, handler))

    def detach(self) -> None:
        for handler in self._handlers:
            for f in [f for f in handler.filters if isinstance(f, _Holder) and f.owner is self]:
                handler.removeFilter(f)

    def hold(self, handler: logging.Handler, record: logging.LogRecord) -> bool:
        if not self._narrator.replying:
            return True
        self._held.append((handler, record))
        return False

    def release(self) -> None:
        held, self._held = self._held, []
        for handler, record in held:
            handler.handle(record)


class _Holder(logging.Filter):
    def __init__(self, owner: HeldLogs, handler: logging.Handler) -> None:
        super().__init__()
        self.owner = owner
        self._handler = handler

    def filter(self, record: logging.LogRecord) -> bool:
        return self.owner.hold(self._handler, record)


class Session:
    """One conversation: the history, the command dispatch and the printing."""

    def __init__(self, llm: UnifiedLLMInference, system: str | None, *,
                 details: bool = False) -> None:
        self.llm = llm
        self.system: list[Message] = [{"role": "system", "content": system}] if system else []
        self.history: list[Message] = []
        self.interactive = is_tty(sys.stdin)
        self.styled = is_tty(sys.stdout)
        self.details = details
        self.prompt = "you> " if self.interactive else ""
        self.narrator = Narrator(llm, styled=self.styled, prompt=self.prompt)
        self.logs = HeldLogs(self.narrator)
        self._reply: asyncio.Future[Reply] | None = None
        """The reply streaming now (Ctrl-C stops it), or None."""
        self._stopped = False
        self.commands: dict[str, Callable[[str], object]] = {
            "/provider": self._provider,
            "/auto": self._auto,
            "/reset": self._reset,
            "/details": self._details,
            "/help": lambda _: say(HELP),
        }

    async def loop(self) -> None:
        """Read, answer, repeat until /quit or end of input."""
        stop_watching = self.llm.watch_switches(self.narrator.heard)
        self.logs.attach(self.llm.logger)
        restore = sigint_calls(self._interrupted)
        try:
            await self._loop()
        finally:
            restore()
            stop_watching()
            self.logs.detach()

    def _interrupted(self, leave: Callable[[], None]) -> None:
        """Ctrl-C: stop the reply in progress if there is one, else leave the chat."""
        task = self._reply
        if task is not None and not task.done():
            self._stopped = True
            task.cancel()
        else:
            leave()

    async def _loop(self) -> None:
        if self.interactive:
            say("DEMI chat. /help lists the commands, /quit leaves.")
        while True:
            self.narrator.waiting = True
            try:
                line = await read_line(self.prompt)
            finally:
                self.narrator.waiting = False
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
            self.narrator.replying = True
            try:
                await self.turn(line)
            finally:
                self.narrator.replying = False
                self.logs.release()
                self.narrator.flush()

    async def turn(self, text: str) -> None:
        """Send the conversation plus ``text``; keep both turns only if the answer completes.

        The reply runs as a task of its own so that Ctrl-C can stop it (and only it); a
        cancellation of this session itself stops the reply too and goes on up.
        """
        user = {"role": "user", "content": text}
        task = asyncio.ensure_future(self._stream([*self.system, *self.history, user]))
        self._reply, self._stopped = task, False
        try:
            await asyncio.wait([task])
        finally:
            self._reply = None
            if not task.done():  # this session was cancelled: the reply goes with it
                await cancel_and_wait(task)
        if task.cancelled():
            if not self._stopped:
                raise asyncio.CancelledError  # not ours to swallow
            say("(reply stopped)")
            return
        try:
            reply = task.result()
        except (AllProvidersFailed, RequestError, StreamInterrupted) as exc:
            complain(self._in_chat_words(exc))
            return
        result = reply.result()
        self.history += [user, {"role": "assistant", "content": result.text}]
        say(self._tag(reply))

    def _tag(self, reply: Reply) -> str:
        """``[ollama · llama3.2:1b]``: who wrote the reply (all of them, if continued)."""
        result = reply.result()
        parts = [" → ".join(reply.providers), result.model]
        if len(reply.providers) > 1:
            parts.append("continued")
        elif result.fallback_used:
            parts.append("fallback")
        if self.details:
            if reply.hedged:
                parts.append(f"hedge won by {reply.provider}")
            if result.time_to_first_token is not None:
                parts.append(f"first token {result.time_to_first_token * 1000:.0f} ms")
        tag = f"[{' · '.join(parts)}]"
        return f"\x1b[2m{tag}\x1b[0m" if self.styled else tag

    def _in_chat_words(self, exc: Exception) -> str:
        """The error, with the library's hints (``force_provider(None)``) in the chat's
        own words (``/auto``)."""
        pinned = self.llm.forced_provider
        if isinstance(exc, AllProvidersFailed) and pinned is not None:
            reasons = "; ".join(f"{self.llm.display(e.provider)}: {e.reason}"
                                for e in exc.errors)
            shown = plain(self.llm.display(pinned))
            return (f"{shown} failed (pinned with /provider {pinned}): {reasons}. "
                    "Type /auto to let the other providers answer.")
        return str(exc)

    async def _stream(self, messages: list[Message]) -> Reply:
        reply = await self.llm.open_stream(messages)
        self.narrator.flush()  # a failover that happened on the way: said before the text
        async with reply:
            try:
                async for chunk in reply:
                    if chunk.text:
                        sys.stdout.write(chunk.text)
                        sys.stdout.flush()
            finally:
                if reply.text:  # end the (possibly partial) answer before the tag or error
                    sys.stdout.write("\n")
                    sys.stdout.flush()
        return reply

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

    def _details(self, arg: str) -> None:
        self.details = {"on": True, "off": False}.get(arg.lower(), not self.details)
        say("details on: first-token time and hedges after each reply" if self.details
            else "details off")


def sigint_calls(handler: Callable[[Callable[[], None]], None]) -> Callable[[], None]:
    """Make Ctrl-C call ``handler(leave)`` until the returned function is called, which puts
    back the handler in force before; ``leave()`` runs that earlier handler (``asyncio.run``'s,
    which ends the chat the way Ctrl-C always has)."""
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGINT)

    def leave() -> None:
        if callable(previous):
            previous(signal.SIGINT, None)
        else:
            raise KeyboardInterrupt

    try:
        loop.add_signal_handler(signal.SIGINT, handler, leave)
    except (NotImplementedError, RuntimeError, ValueError):
        return lambda: None  # no signal handlers here (not the main thread, Windows)

    def restore() -> None:
        loop.remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, previous if previous is not None
                      else signal.default_int_handler)

    return restore


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
