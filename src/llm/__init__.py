"""DEMI's LLM layer: providers, failover, health checks, routing.

This is its public API, the names listed in ``__all__`` (a test pins the list, and the
conductor imports nothing else from the layer). Start at :class:`UnifiedLLMInference`.

Inside, a folder per job::

    inference.py   UnifiedLLMInference: the facade, lifecycle, manual selection
    walk/          one request over the provider order: attempts, hedging, retries,
                   continuation of a broken stream, the embeddings walk
    routing/       strategies that decide the order (failover, round-robin, nearest,
                   quality, canary, affinity; sticky conversations around any of them)
    state/         what DEMI knows about each provider, with one owner: the registry,
                   breakers, health monitor, warm standby, stats, traffic, history
    providers/     where a provider is called: Ollama, LM Studio, any OpenAI-compatible
                   server, the embedded model; foreign errors mapped once per kind
    engine/        the embedded model's own process and its supervisor
    discovery/     engines already running on loopback, joining the chain by themselves
"""

from .discovery import Found as FoundEngine
from .discovery import find_engines, loopback_port, suggested_entry
from .errors import (
    AllProvidersFailed,
    CannotExpress,
    Closed,
    ConfigError,
    DemiError,
    EmbeddedModelLoading,
    ModelNotFound,
    Overloaded,
    ProviderBusy,
    ProviderError,
    ProviderRejected,
    ProviderResponseError,
    ProviderTimeout,
    ProviderUnavailable,
    RequestError,
    RequestRejected,
    StreamInterrupted,
    UnknownProviderError,
)
from .inference import LMStudioInference, OllamaInference, UnifiedLLMInference
from .providers.base import Provider
from .routing.canary import CanaryStrategy
from .types import ChatChunk, ChatRequest, ChatResult, Embeddings, HealthReport, ToolCall
from .walk.reply import ReplyStream

__all__ = [
    "AllProvidersFailed",
    "CanaryStrategy",
    "CannotExpress",
    "ChatChunk",
    "ChatRequest",
    "ChatResult",
    "Closed",
    "ConfigError",
    "DemiError",
    "EmbeddedModelLoading",
    "Embeddings",
    "FoundEngine",
    "HealthReport",
    "LMStudioInference",
    "ModelNotFound",
    "OllamaInference",
    "Overloaded",
    "Provider",
    "ProviderBusy",
    "ProviderError",
    "ProviderRejected",
    "ProviderResponseError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "ReplyStream",
    "RequestError",
    "RequestRejected",
    "StreamInterrupted",
    "ToolCall",
    "UnifiedLLMInference",
    "UnknownProviderError",
    "find_engines",
    "loopback_port",
    "suggested_entry",
]
