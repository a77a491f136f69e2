"""``ask``: one-shot answers, prompt sources, pinning, JSON, and the exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from src.testing.fakes.launcher import FakeServer
from tests.cli.helpers import Demi, chat_messages
from tests.fakes.fixtures import FakeServerFactory


def test_prints_the_answer(demi: Demi, fake_ollama: FakeServer) -> None:
    """ask "hi" prints Ollama's reply, and only the reply, on stdout."""
    result = demi("ask", "hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello from fake-ollama.\n"
    assert chat_messages(fake_ollama.requests()) == [[{"role": "user", "content": "hi"}]]


def test_reads_the_prompt_from_stdin(demi: Demi, fake_ollama: FakeServer) -> None:
    """Without a prompt argument the prompt is read from stdin."""
    result = demi("ask", stdin="what is up?\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello from fake-ollama.\n"
    assert chat_messages(fake_ollama.requests()) == [[{"role": "user", "content": "what is up?"}]]


def test_dash_reads_stdin(demi: Demi, fake_ollama: FakeServer) -> None:
    """A prompt of '-' also means stdin."""
    result = demi("ask", "-", stdin="from a pipe")
    assert result.returncode == 0, result.stderr
    assert chat_messages(fake_ollama.requests())[0][0]["content"] == "from a pipe"


def test_provider_pins_lmstudio(
    demi: Demi, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """--provider lmstudio is answered by LM Studio and Ollama gets no chat request."""
    result = demi("ask", "--provider", "lmstudio", "hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello from fake-lmstudio.\n"
    assert chat_messages(fake_ollama.requests()) == []
    assert len(chat_messages(fake_lmstudio.requests())) == 1


def test_system_message_goes_first(demi: Demi, fake_ollama: FakeServer) -> None:
    """--system sends a system message ahead of the prompt."""
    result = demi("ask", "--system", "Be brief.", "hi")
    assert result.returncode == 0, result.stderr
    assert chat_messages(fake_ollama.requests()) == [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    ]


def test_json_output(demi: Demi) -> None:
    """--json prints the ChatResult fields."""
    result = demi("ask", "--json", "hi")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {
        "text",
        "provider",
        "model",
        "fallback_used",
        "prompt_tokens",
        "completion_tokens",
        "latency",
    }
    assert data["text"] == "Hello from fake-ollama."
    assert data["provider"] == "ollama"
    assert data["model"] == "llama3.2:1b"
    assert data["fallback_used"] is False
    assert data["completion_tokens"] == 3


def test_falls_back_when_ollama_fails(demi: Demi, fake_ollama: FakeServer) -> None:
    """An Ollama 500 on the chat request is answered by LM Studio instead."""
    fake_ollama.control(mode="status", status=500, times=1)
    result = demi("ask", "--json", "hi")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["provider"] == "lmstudio"
    assert data["fallback_used"] is True


def test_both_down_exits_1_with_the_guides_message(
    demi: Demi, fake_server_factory: FakeServerFactory
) -> None:
    """With both providers dead: exit 1, the guide's message on stderr, nothing on stdout."""
    ollama, lmstudio = fake_server_factory("ollama"), fake_server_factory("lmstudio")
    ollama.kill()
    lmstudio.kill()
    result = demi(
        "ask", "hi", env={"OLLAMA_BASE_URL": ollama.url, "LMSTUDIO_BASE_URL": lmstudio.url}
    )
    assert result.returncode == 1
    assert "Both Ollama and LMStudio providers failed" in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_bad_config_value_exits_2_naming_the_key(demi: Demi) -> None:
    """DEMI_ENABLE_LLM_FALLBACK=maybe: exit 2, the key and its source named, no traceback."""
    result = demi("ask", "hi", env={"DEMI_ENABLE_LLM_FALLBACK": "maybe"})
    assert result.returncode == 2
    assert "llm.enable_fallback" in result.stderr
    assert "DEMI_ENABLE_LLM_FALLBACK" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_unknown_provider_exits_2(demi: Demi) -> None:
    """--provider with a name that is not configured is a configuration error (exit 2)."""
    result = demi("ask", "--provider", "nope", "hi")
    assert result.returncode == 2
    assert "llm.provider" in result.stderr and "'nope'" in result.stderr
    assert "Traceback" not in result.stderr


def test_empty_prompt_exits_2(demi: Demi, fake_ollama: FakeServer) -> None:
    """An empty stdin is a usage error and sends nothing upstream."""
    result = demi("ask", stdin="  \n")
    assert result.returncode == 2
    assert "prompt is empty" in result.stderr
    assert chat_messages(fake_ollama.requests()) == []


def test_host_before_a_client_command_is_rejected(demi: Demi) -> None:
    """--host/--port only mean something to serve; elsewhere they are a usage error."""
    result = demi("--port", "9000", "ask", "hi")
    assert result.returncode == 2
    assert "only to the serve command" in result.stderr


def test_options_before_the_command_apply(demi: Demi, tmp_path: Path) -> None:
    """--config given before the command name is used by the command."""
    conf = tmp_path / "demi.yaml"
    conf.write_text("llm:\n  provider: lmstudio\n", encoding="utf-8")
    result = demi("--config", str(conf), "ask", "--json", "hi")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["provider"] == "lmstudio"


def test_missing_config_file_exits_2(demi: Demi, tmp_path: Path) -> None:
    """An unreadable --config path is reported by name with exit 2."""
    missing = tmp_path / "nowhere.yaml"
    result = demi("ask", "--config", str(missing), "hi")
    assert result.returncode == 2
    assert str(missing) in result.stderr
    assert "Traceback" not in result.stderr
