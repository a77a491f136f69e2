"""Telling engines apart by what they answer, against real processes on loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from src.llm.discovery import DEFAULT_PORTS, scan
from src.llm.discovery.identify import Answer, recognise
from src.testing.fakes.launcher import FakeServer, free_port
from tests.discovery.conftest import MakeEngine
from tests.waiting import wait_until_sync

TIMEOUT = 2.0


@pytest.mark.parametrize(
    ("flavour", "engine"),
    [("llamacpp", "llamacpp"), ("vllm", "vllm"), ("sglang", "sglang"),
     ("koboldcpp", "koboldcpp"), ("localai", "localai"), ("textgen", "textgen")],
)
async def test_each_engine_is_told_by_its_signature(
    make_engine: MakeEngine, flavour: str, engine: str,
) -> None:
    """On a port that is nobody's default, each engine is still named by what it answers."""
    server = make_engine(flavour, args=["--model", f"{flavour}-7b"])
    [found] = await scan([server.port], timeout=TIMEOUT)
    assert found.engine.key == engine
    assert found.models == (f"{flavour}-7b",)
    assert found.base_url == f"http://127.0.0.1:{server.port}"
    assert found.usable


async def test_a_second_ollama_is_found_with_its_models(fake_ollama: FakeServer) -> None:
    """An Ollama answers /api/version and /api/tags: its pulled models come from the tags."""
    [found] = await scan([fake_ollama.port], timeout=TIMEOUT)
    assert found.engine.key == "ollama" and found.engine.kind == "ollama"
    assert found.models == ("llama3.2:1b",)
    assert found.version is not None


async def test_an_ollama_without_models_is_found_but_not_usable(
    fake_ollama: FakeServer,
) -> None:
    """DEMI's Ollama provider needs a model to ask for: with none pulled it is only shown."""
    fake_ollama.control(models=[])
    [found] = await scan([fake_ollama.port], timeout=TIMEOUT)
    assert found.engine.key == "ollama" and found.models == () and not found.usable


async def test_a_server_that_wants_a_key_is_found_but_not_usable(
    make_engine: MakeEngine,
) -> None:
    """A 401 on /v1/models (Jan without its key) is an engine DEMI cannot use as it is."""
    server = make_engine("jan", args=["--api-key", "secret"])
    [found] = await scan([server.port], timeout=TIMEOUT)
    assert found.needs_key and not found.usable


async def test_signatureless_servers_are_named_by_their_port_or_generically(
    make_engine: MakeEngine,
) -> None:
    """GPT4All shows nothing of its own: off its default port it is just OpenAI-compatible."""
    server = make_engine("gpt4all")
    [found] = await scan([server.port], timeout=TIMEOUT)
    assert found.engine.key == "openai"
    assert found.engine.display == "an OpenAI-compatible server"
    assert found.models == ("gpt4all-model",)


@pytest.fixture
def foreign_http(tmp_path: Path) -> Iterator[int]:
    """Python's own http.server: something listening that is no LLM engine."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                             "127.0.0.1"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        def up() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0
        wait_until_sync(up, "http.server to listen")
        yield port
    finally:
        proc.kill()
        proc.wait()


async def test_something_else_listening_is_not_an_engine(foreign_http: int) -> None:
    """A web server answering 404 everywhere is left alone."""
    assert await scan([foreign_http], timeout=TIMEOUT) == []


async def test_nothing_listening_finds_nothing() -> None:
    """Closed ports are refused at once and found empty."""
    assert await scan([free_port(), free_port()], timeout=TIMEOUT) == []


def test_llamafile_is_told_from_llama_cpp_by_its_own_words() -> None:
    """llamafile embeds llama.cpp's server: named llamafile only where it says so."""
    props = Answer(200, "", {"default_generation_settings": {}, "build_info": "llamafile 0.9"})
    models = Answer(200, "", {"data": [{"id": "m", "owned_by": "llamacpp"}]})
    found = recognise(8080, {"/props": props, "/v1/models": models})
    assert found is not None and found.engine.key == "llamafile"
    plain = recognise(8080, {"/props": Answer(200, "llama.cpp", {"model_alias": "m"}),
                             "/v1/models": models})
    assert plain is not None and plain.engine.key == "llamacpp"


def test_llama_cpp_imitating_ollama_is_still_llama_cpp() -> None:
    """llama.cpp's server answers some Ollama routes; its Server header decides."""
    answers = {
        "/api/version": Answer(200, "llama.cpp", {"version": "x"}),
        "/api/tags": Answer(200, "llama.cpp", {"models": [{"name": "m"}]}),
        "/v1/models": Answer(200, "llama.cpp", {"data": [{"id": "m", "owned_by": "llamacpp"}]}),
    }
    found = recognise(8080, answers)
    assert found is not None and found.engine.key == "llamacpp"


def test_default_ports_are_the_documented_ones() -> None:
    """llama.cpp/LocalAI/llamafile 8080, vLLM 8000, SGLang 30000, Jan 1337, KoboldCpp 5001,
    text-generation-webui 5000, GPT4All 4891, a second Ollama 11435."""
    assert DEFAULT_PORTS == (8080, 8000, 30000, 1337, 5001, 5000, 4891, 11435)
