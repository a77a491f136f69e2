"""DEMI's LLM layer: providers, failover, health checks, routing.

Start at :class:`UnifiedLLMInference` in ``inference.py``.
"""

from .errors import (
    AllProvidersFailed,
    Closed,
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
from .inference import LMStudioInference, OllamaInference, UnifiedLLMInference
from .providers.base import Provider
from .types import ChatChunk, ChatRequest, ChatResult, HealthReport

__all__ = [
    "AllProvidersFailed",
    "ChatChunk",
    "ChatRequest",
    "ChatResult",
    "Closed",
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
