"""Fitting one request to one provider: its context window, the caller's options.

Each provider gets its own copy of the conversation, trimmed to leave room for the reply
in *its* context window (the caller's messages are never changed; the sticky table and the
outcome recorder keep using those).
"""

from __future__ import annotations

import logging
from typing import Any

from ..options import ChatOptions
from ..providers.base import Provider
from ..tokens import TokenEstimator
from ..types import ChatRequest


def request_for(
    provider: Provider, msgs: list[dict[str, Any]], opts: ChatOptions, tokens: TokenEstimator,
    max_tokens: int, logger: logging.Logger,
) -> ChatRequest:
    """The request for one provider: the conversation fitted into its context window
    (leaving room for the reply) and the caller's options."""
    window = provider.context_window
    reply_budget = min(opts.max_tokens or max_tokens, window // 2)
    model_key = f"{provider.name}:{provider.model}"
    fitted, report = tokens.fit(msgs, window - reply_budget, model_key)
    if report.dropped or report.shortened:
        logger.debug(
            "Trimmed conversation for %s: dropped %d message(s), shortened %d "
            "(about %d tokens for a budget of %d)",
            provider.name, report.dropped, report.shortened,
            report.estimated_tokens, report.budget,
        )
    return ChatRequest(
        messages=fitted, model=opts.model_for(provider.name), temperature=opts.temperature,
        max_tokens=opts.max_tokens, stop=opts.stop, options=opts.extra,
    )
