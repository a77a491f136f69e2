"""The root of DEMI's error tree, and the one error the core itself raises.

It lives in ``core`` because the configuration (``core.config``) raises it and every layer
above builds on it: imports run one way, ``conductor → llm → core``. The rest of the tree
(provider failures, request errors) is drawn in :mod:`src.llm.errors`.
"""

from __future__ import annotations


class DemiError(Exception):
    """Base class of every error DEMI raises on purpose."""


class ConfigError(DemiError):
    """The configuration is invalid. The message names the key, the bad value and the fix."""


__all__ = ["ConfigError", "DemiError"]
