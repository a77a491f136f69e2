"""``chat`` driven through stdin: turns, provider commands, history and error recovery."""

from __future__ import annotations

from src.testing.fakes.launcher import FakeServer
from tests.cli.helpers import Demi, chat_messages, table_rows

OLLAMA_REPLY = "Hello from fake-ollama."
LMSTUDIO_REPLY = "Hello from fake-lmstudio."


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def test_conversation_with_provider_switching(
    demi: Demi, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """Two turns, a pin to LM Studio, an unknown name, /auto and /quit, all in one session."""
    script = "hello\n/provider lmstudio\nsecond\n/provider nope\n/auto\nthird\n/quit\nignored\n"
    result = demi("chat", stdin=script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == [
        OLLAMA_REPLY,
        "[ollama · llama3.2:1b]",
        "pinned to lmstudio: no fallback until /auto",
        LMSTUDIO_REPLY,
        "[lmstudio · qwen2.5-7b-instruct]",
        "automatic selection; now using ollama",
        OLLAMA_REPLY,
        "[ollama · llama3.2:1b]",
    ]
    assert "unknown provider 'nope'" in result.stderr
    assert "ollama, lmstudio" in result.stderr
    # The history travels with every request, whichever provider answers it.
    assert chat_messages(fake_lmstudio.requests()) == [
        [user("hello"), assistant(OLLAMA_REPLY), user("second")],
    ]
    assert chat_messages(fake_ollama.requests()) == [
        [user("hello")],
        [
            user("hello"),
            assistant(OLLAMA_REPLY),
            user("second"),
            assistant(LMSTUDIO_REPLY),
            user("third"),
        ],
    ]


def test_end_of_input_exits_0(demi: Demi) -> None:
    """Running out of stdin (Ctrl-D) ends the chat with exit 0."""
    result = demi("chat", stdin="hi\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [OLLAMA_REPLY, "[ollama · llama3.2:1b]"]


def test_reset_clears_the_history(demi: Demi, fake_ollama: FakeServer) -> None:
    """/reset forgets earlier turns; the system message from --system stays."""
    result = demi("chat", "--system", "Be kind.", stdin="one\n/reset\ntwo\n")
    assert result.returncode == 0, result.stderr
    assert "conversation cleared" in result.stdout
    system = {"role": "system", "content": "Be kind."}
    assert chat_messages(fake_ollama.requests()) == [[system, user("one")], [system, user("two")]]


def test_failed_turn_is_reported_and_not_kept(demi: Demi, fake_ollama: FakeServer) -> None:
    """When every provider fails, one error line appears, the chat goes on, the turn is dropped."""
    fake_ollama.control(mode="status", status=500, times=1)
    result = demi("chat", "--provider", "ollama", stdin="lost\nkept\n")
    assert result.returncode == 0, result.stderr
    # The hint is in the chat's own words (/auto), not the library's force_provider(None).
    assert "Ollama failed (pinned with /provider ollama): Ollama: HTTP 500" in result.stderr
    assert "Type /auto to let the other providers answer." in result.stderr
    assert "force_provider" not in result.stderr
    # Pinned, traffic never moves: no switch is announced.
    assert result.stdout.splitlines() == [OLLAMA_REPLY, "[ollama · llama3.2:1b]"]
    assert chat_messages(fake_ollama.requests())[-1] == [user("kept")]


def test_broken_stream_is_reported_and_not_kept(
    demi: Demi, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """mid_stream: error: a broken reply shows what arrived, an error line, no history."""
    fake_ollama.control(mode="midstream_error", after_chunks=1, times=1)
    config = demi.cwd / "error.yaml"
    config.write_text("llm:\n  mid_stream: error\n", encoding="utf-8")
    result = demi("chat", "--config", str(config), stdin="cut\nwhole\n")
    assert result.returncode == 0, result.stderr
    assert "stream broke" in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Hello"  # the part that arrived before the break
    # The broken stream opened Ollama's circuit, which the chat says in plain words; the
    # next turn fails over to LM Studio.
    assert lines[1].startswith("Ollama stopped answering (error in the middle of the reply")
    assert lines[1].endswith(" — LM Studio is answering")
    assert lines[2:] == [LMSTUDIO_REPLY, "[lmstudio · qwen2.5-7b-instruct · fallback]"]
    assert chat_messages(fake_lmstudio.requests()) == [[user("whole")]]


def test_status_and_help_commands(demi: Demi) -> None:
    """/status prints the provider table and /help the command list, without a request."""
    result = demi("chat", stdin="/status\n/help\n/bogus\n")
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert rows["ollama"]["REACHABLE"] == "yes" and rows["ollama"]["ACTIVE"] == "*"
    assert "/provider NAME" in result.stdout
    assert "unknown command /bogus" in result.stderr
