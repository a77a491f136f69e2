"""LM Studio: an OpenAI-compatible server that also knows which model is loaded.

The guide's ``lmstudio:`` block has no model key and Ollama's model names mean nothing to
LM Studio, so when no ``llm.lmstudio.model`` is set DEMI asks LM Studio's native
``/api/v0/models`` for the model in state ``loaded`` (servers without that route, such as
llama.cpp's, fall back to the first entry of ``/v1/models``).
"""

from __future__ import annotations

import asyncio

from ...core.config import LMStudioConfig
from ..errors import ProviderError, RequestError
from ..types import ChatRequest
from .base import Timeouts
from .openai_compat import OpenAICompatProvider, SessionFactory


class LMStudioInference(OpenAICompatProvider):
    """The guide's fallback provider."""

    kind = "lmstudio"
    json_object_as_schema = True  # LM Studio refuses response_format json_object

    def __init__(
        self,
        cfg: LMStudioConfig,
        timeouts: Timeouts,
        *,
        name: str = "lmstudio",
        display_name: str = "LMStudio",
        session_factory: SessionFactory | None = None,
    ) -> None:
        super().__init__(
            name, display_name,
            base_url=cfg.base_url, model=cfg.model, api_key=cfg.api_key,
            first_token_timeout=cfg.timeout, temperature=cfg.temperature,
            context_window=cfg.context_window, timeouts=timeouts,
            region=cfg.region, session_factory=session_factory,
            embedding_model=cfg.embedding_model,
        )

    async def warm(self, keep_for: float) -> bool:
        """A one-token request with LM Studio's ``ttl``: loads the model (just-in-time) and
        keeps it loaded for ``ttl`` idle seconds (each request restarts that timer)."""
        body = {"messages": [{"role": "user", "content": "."}], "max_tokens": 1,
                "stream": False, "ttl": max(1, round(keep_for))}
        try:
            with self._errors("warm-up timed out"):
                async with asyncio.timeout(self.first_token_timeout):
                    body["model"] = await self._model_for(ChatRequest(messages=[]))
                    async with self._get_session().post(
                        self.url + "/v1/chat/completions", json=body, headers=self._headers
                    ) as resp:
                        await resp.read()
                        return resp.status < 400
        except (ProviderError, RequestError):  # down, no model: the health check's business
            return False

    async def _available_models(self) -> list[str]:
        """Loaded LLMs first (``/api/v0/models``), then everything ``/v1/models`` lists."""
        listed = await self._list_models(self.health_timeout)
        loaded = await self._loaded_models()
        return loaded + [m for m in listed if m not in loaded]

    async def _loaded_models(self) -> list[str]:
        try:
            data = await self._get_json("/api/v0/models", self.health_timeout)
        except ProviderError:
            return []  # not LM Studio's native API (llama.cpp, older builds): not an error
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            return []
        return [
            str(e["id"]) for e in entries
            if isinstance(e, dict) and e.get("state") == "loaded"
            and e.get("type", "llm") in ("llm", "vlm") and "id" in e
        ]
