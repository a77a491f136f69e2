"""The local engines DEMI looks for, their default ports, and how each one is told apart.

Every port and protocol here was checked against the engine's own documentation or
source (the ``search`` notes of issue 18):

=====================  =====  ===========================================================
engine                 port   how it answers
=====================  =====  ===========================================================
llama.cpp server       8080   ``Server: llama.cpp`` header; ``/props`` with
                              ``default_generation_settings``; ``/v1/models`` entries
                              ``owned_by: llamacpp``
vLLM                   8000   ``/v1/models`` entries ``owned_by: vllm``
SGLang                 30000  ``/v1/models`` entries ``owned_by: sglang``
LocalAI                8080   ``/readyz`` answers 200 and there is no ``/props``
Jan                    1337   an OpenAI API at ``/v1`` that wants an API key (401 without)
KoboldCpp              5001   ``/api/extra/version`` → ``{"result": "KoboldCpp", ...}``
text-generation-webui  5000   ``/v1/internal/model/info`` → ``{"model_name": ...}``
GPT4All                4891   an OpenAI API at ``/v1`` (nothing else to tell it by)
llamafile              8080   llama.cpp's server inside; told apart only where its
                              ``Server`` header or ``/props`` says ``llamafile``
Ollama (a second one)  11435  ``/api/version`` → ``{"version": ...}`` and ``/api/tags``
=====================  =====  ===========================================================

Signatures come first and the port last: with ``llm.discover_ports`` any engine may sit on
any port, and three engines share 8080 by default. An OpenAI-compatible server that shows
no signature is named by its port when that port belongs to one engine only (Jan, GPT4All),
else it is "an OpenAI-compatible server".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Engine:
    """One kind of local engine: what DEMI calls it and where it listens by default."""

    key: str
    """The provider name DEMI gives it (``llamacpp``); ``key-PORT`` off its own port."""
    display: str
    """What log lines and tables say (``llama.cpp server``)."""
    port: int
    kind: Literal["openai", "ollama"]
    """Which of DEMI's provider kinds speaks its API."""


LLAMACPP = Engine("llamacpp", "llama.cpp server", 8080, "openai")
VLLM = Engine("vllm", "vLLM", 8000, "openai")
SGLANG = Engine("sglang", "SGLang", 30000, "openai")
LOCALAI = Engine("localai", "LocalAI", 8080, "openai")
JAN = Engine("jan", "Jan", 1337, "openai")
KOBOLDCPP = Engine("koboldcpp", "KoboldCpp", 5001, "openai")
TGWUI = Engine("textgen", "text-generation-webui", 5000, "openai")
GPT4ALL = Engine("gpt4all", "GPT4All", 4891, "openai")
LLAMAFILE = Engine("llamafile", "llamafile", 8080, "openai")
OLLAMA = Engine("ollama", "Ollama", 11435, "ollama")
OPENAI = Engine("openai", "an OpenAI-compatible server", 0, "openai")
"""No signature and a port shared by several engines (or not a default one)."""

ENGINES: tuple[Engine, ...] = (
    LLAMACPP, VLLM, SGLANG, LOCALAI, JAN, KOBOLDCPP, TGWUI, GPT4ALL, LLAMAFILE, OLLAMA,
)
"""In the order the issue lists them: the order discovered providers join the chain."""

DEFAULT_PORTS: tuple[int, ...] = tuple(dict.fromkeys(e.port for e in ENGINES))
"""The ports probed when ``llm.discover_ports`` is empty: 8080, 8000, 30000, 1337, 5001,
5000, 4891, 11435."""

OWNED_BY = {"llamacpp": LLAMACPP, "vllm": VLLM, "sglang": SGLANG}
"""``/v1/models`` ``owned_by`` values the servers use for themselves (read in their source:
llama.cpp's server, vLLM's and SGLang's OpenAI protocol modules)."""


def by_port(port: int) -> Engine:
    """The engine a signature-less OpenAI server on ``port`` is: the port's only owner, or
    the generic name when several engines (or none) use that port by default."""
    owners = [e for e in ENGINES if e.port == port and e.kind == "openai"]
    return owners[0] if len(owners) == 1 else OPENAI
