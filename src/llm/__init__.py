"""DEMI's LLM layer: providers, failover, health checks, routing.

Start at :class:`UnifiedLLMInference` in ``inference.py``.
"""

from typing import TYPE_CHECKING, Any

from .errors import (
    AllProvidersFailed,
    ConfigError,
    DemiError,
    ModelNotFound,
    ProviderBusy,
    ProviderError,
    ProviderResponseError,
    ProviderTimeout,
    ProviderUnavailable,
    RequestError,
    StreamInterrupted,
    UnknownProviderError,
)
from .provider import Provider
from .types import ChatChunk, ChatRequest, ChatResult, HealthReport

if TYPE_CHECKING:
    from .inference import LMStudioInference, OllamaInference, UnifiedLLMInference

_LAZY = {"LMStudioInference", "OllamaInference", "UnifiedLLMInference"}


def __getattr__(name: str) -> Any:
    """Import the inference classes on first use.

    ``src.core.config`` imports ``src.llm.errors``; importing ``inference`` eagerly here
    would make that a cycle (inference needs the config classes).
    """
    if name in _LAZY:
        from . import inference

        return getattr(inference, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AllProvidersFailed",
    "ChatChunk",
    "ChatRequest",
    "ChatResult",
    "ConfigError",
    "DemiError",
    "HealthReport",
    "LMStudioInference",
    "ModelNotFound",
    "OllamaInference",
    "Provider",
    "ProviderBusy",
    "ProviderError",
    "ProviderResponseError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RequestError",
    "StreamInterrupted",
    "UnifiedLLMInference",
    "UnknownProviderError",
]
