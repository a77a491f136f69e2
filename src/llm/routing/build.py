"""The configured routing strategy, built once at start-up from ``llm.routing``."""

from __future__ import annotations

import logging

from ...core.config import RoutingConfig
from .canary import CanaryStrategy
from .sticky import StickyStrategy, StickyTable
from .strategies import (
    AffinityStrategy,
    FailoverStrategy,
    LeastBusyStrategy,
    NearestStrategy,
    QualityStrategy,
    RoundRobinStrategy,
)
from .strategy import Strategy

SPREADING = frozenset({"round_robin", "quality", "nearest", "least_busy"})
"""Strategies that may send one conversation's turns to different servers: where
``llm.routing.sticky: null`` turns sticky conversations on (with 2+ providers). Under
failover and affinity every turn already starts at the same place (and sticking would
keep traffic off a recovered primary); a canary's rollback must move traffic at once."""


def make_strategy(
    cfg: RoutingConfig, weights: dict[str, float] | None = None,
    logger: logging.Logger | None = None, *, providers: int = 1,
    tags: dict[str, list[str]] | None = None,
) -> Strategy:
    """Build the configured routing strategy (``providers``: how many it can spread over)."""
    strategy = _base_strategy(cfg, weights, logger, tags or {})
    sticky = cfg.sticky if cfg.sticky is not None else (
        cfg.strategy in SPREADING and providers > 1)
    if sticky:
        return StickyStrategy(strategy, StickyTable(cfg.sticky_size, cfg.sticky_ttl))
    return strategy


def _base_strategy(
    cfg: RoutingConfig, weights: dict[str, float] | None, logger: logging.Logger | None,
    tags: dict[str, list[str]],
) -> Strategy:
    if cfg.strategy == "round_robin":
        return RoundRobinStrategy(weights)
    if cfg.strategy == "nearest":
        return NearestStrategy(cfg.region)
    if cfg.strategy == "quality":
        return QualityStrategy()
    if cfg.strategy == "canary":
        return CanaryStrategy.from_config(cfg, logger=logger)
    if cfg.strategy == "affinity":
        return AffinityStrategy(cfg.affinity, tags)
    if cfg.strategy == "least_busy":
        return LeastBusyStrategy()
    return FailoverStrategy()
