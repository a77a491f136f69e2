"""The terminal chat through a real pseudo-terminal (pexpect): what a person sees.

The fakes are private processes the tests kill and restart mid-conversation; the chat is
``python -m src.conductor chat`` on a pty, so ``isatty()`` is true, the prompt is shown,
Ctrl-C is a real SIGINT from the terminal and replies are dimmed as on a real screen.
``expect`` only waits for text (its timeout is a hang guard, never a timing assertion).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pytest

from src.testing.fakes.launcher import FakeServer, free_port
from tests.cli.helpers import REPO_ROOT, chat_messages, clean_environ

HANG_GUARD = 30
OLLAMA_REPLY = "Hello from fake-ollama."
LMSTUDIO_REPLY = "Hello from fake-lmstudio."
PROMPT = "you> "
CONFIG = """\
llm:
  probe_interval: 0.05
  probe_backoff_max: 0.2
  health_check_timeout: 1
  connect_timeout: 1
  hedge: {min_delay: 0.3}
  ollama: {timeout: 10}
  lmstudio: {timeout: 10}
"""


class Terminal:
    """The chat on a pty, with the fakes it talks to."""

    def __init__(self, child: pexpect.spawn, ollama: FakeServer, lmstudio: FakeServer) -> None:
        self.child = child
        self.ollama = ollama
        self.lmstudio = lmstudio

    def prompt(self) -> None:
        self.child.expect_exact(PROMPT)

    def send(self, line: str) -> None:
        self.child.sendline(line)

    def sees(self, text: str) -> None:
        self.child.expect_exact(text)

    def sees_pattern(self, pattern: str) -> re.Match[str]:
        self.child.expect(pattern)
        match = self.child.match
        assert isinstance(match, re.Match)
        return match

    def quit(self) -> int:
        self.send("/quit")
        self.child.expect(pexpect.EOF)
        self.child.close()
        status = self.child.exitstatus
        assert isinstance(status, int)
        return status


@pytest.fixture
def terminal(tmp_path: Path,
             fake_server_factory: Callable[..., FakeServer]) -> Iterator[Terminal]:
    ollama = fake_server_factory("ollama")
    lmstudio = fake_server_factory("lmstudio")
    config = tmp_path / "demi.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    env = {**clean_environ(), "OLLAMA_BASE_URL": ollama.url,
           "LMSTUDIO_BASE_URL": lmstudio.url, "DEMI_PORT": str(free_port()),
           "DEMI_CONFIG": str(config), "TERM": "xterm"}
    child = pexpect.spawn(sys.executable, ["-m", "src.conductor", "chat"], cwd=str(tmp_path),
                          env=env, encoding="utf-8", timeout=HANG_GUARD,
                          dimensions=(40, 200))
    assert REPO_ROOT.is_dir()
    term = Terminal(child, ollama, lmstudio)
    try:
        term.sees("DEMI chat. /help lists the commands, /quit leaves.")
        term.prompt()
        yield term
    finally:
        if child.isalive():
            child.terminate(force=True)


def test_switches_are_announced_as_they_happen(terminal: Terminal) -> None:
    """Ollama killed mid-conversation: the failover is said in plain words before LM
    Studio's reply; Ollama restarted: its return is said at the prompt, unasked."""
    terminal.send("hello")
    terminal.sees(OLLAMA_REPLY)
    terminal.sees("[ollama · llama3.2:1b]")
    terminal.prompt()

    terminal.ollama.kill()
    terminal.send("again")
    terminal.sees("Ollama stopped answering (connection refused) — LM Studio is answering")
    terminal.sees(LMSTUDIO_REPLY)
    terminal.sees("[lmstudio · qwen2.5-7b-instruct · fallback]")
    terminal.prompt()

    terminal.ollama.restart()  # same port: the breaker's probes find it
    terminal.sees("Ollama is back — switching to it")
    terminal.prompt()  # shown again under the news
    terminal.send("third")
    terminal.sees(OLLAMA_REPLY)
    terminal.sees("[ollama · llama3.2:1b]")
    terminal.prompt()

    terminal.send("/status")
    match = terminal.sees_pattern(r"ollama +http://127\.0\.0\.1:\d+ +yes")
    assert match is not None
    terminal.prompt()
    assert terminal.quit() == 0
    # The history kept every completed turn, whoever answered it.
    assert chat_messages(terminal.ollama.requests())[-1][-3:] == [
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": LMSTUDIO_REPLY},
        {"role": "user", "content": "third"},
    ]


def test_ctrl_c_stops_the_reply_and_keeps_the_chat(terminal: Terminal) -> None:
    """Ctrl-C during a slow reply stops that reply only; the next message is answered and
    the stopped one is not in its history."""
    terminal.ollama.control(reply_tokens=400, chunk_delay=0.05, times=1)
    terminal.send("tell me a long story")
    terminal.sees("tell me a long story\r\n")  # the terminal's echo of the line
    terminal.sees_pattern(r"\w+ \w+ \w+")  # the reply is streaming
    terminal.child.sendintr()
    terminal.sees("(reply stopped)")
    terminal.prompt()
    terminal.ollama.control(reply_tokens=None)
    terminal.send("short one")
    terminal.sees(OLLAMA_REPLY)
    terminal.sees("[ollama · llama3.2:1b]")
    terminal.prompt()
    assert terminal.quit() == 0
    assert chat_messages(terminal.ollama.requests())[-1] == [
        {"role": "user", "content": "short one"}]


def test_a_continued_reply_names_its_writers_and_details_show_on_request(
    terminal: Terminal,
) -> None:
    """A reply cut after one word and continued by LM Studio names both; with /details on,
    the first-token time shows, and a hedge that won says so."""
    terminal.send("/details")
    terminal.sees("details on")
    terminal.prompt()

    terminal.ollama.control(mode="cut", after_chunks=1, times=1)
    terminal.send("cut me")
    terminal.sees(LMSTUDIO_REPLY)  # "Hello" from Ollama, the rest from LM Studio
    terminal.sees_pattern(r"\[ollama → lmstudio · [\w.-]+ · continued · first token \d+ ms\]")
    terminal.sees("— LM Studio is answering")  # said after the reply, never inside it
    terminal.sees("Ollama is back — switching to it")
    terminal.prompt()

    terminal.ollama.control(first_token_delay=5, times=1)
    terminal.send("slow start")
    terminal.sees(LMSTUDIO_REPLY)
    terminal.sees_pattern(r"\[lmstudio · qwen2\.5-7b-instruct · fallback · hedge won by "
                          r"lmstudio · first token \d+ ms\]")
    terminal.prompt()
    assert terminal.quit() == 0


def test_a_pinned_provider_failing_hints_in_the_chats_words(terminal: Terminal) -> None:
    """Pinned with /provider, a failure says to type /auto (not force_provider(None))."""
    terminal.send("/provider ollama")
    terminal.sees("pinned to ollama: no fallback until /auto")
    terminal.prompt()
    terminal.ollama.kill()
    terminal.send("hello")
    terminal.sees("Ollama failed (pinned with /provider ollama)")
    terminal.sees("Type /auto to let the other providers answer.")
    terminal.prompt()
    terminal.send("/auto")
    terminal.sees("automatic selection; now using lmstudio")
    terminal.prompt()
    assert terminal.quit() == 0


def test_ctrl_c_at_the_prompt_leaves_with_exit_0(terminal: Terminal) -> None:
    """Outside a reply, Ctrl-C is how people leave: the chat ends, exit code 0."""
    terminal.send("hello")
    terminal.sees("[ollama · llama3.2:1b]")
    terminal.prompt()
    terminal.child.sendintr()
    terminal.child.expect(pexpect.EOF)
    terminal.child.close()
    assert terminal.child.exitstatus == 0
