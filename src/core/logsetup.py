"""Logging set-up: the guide's ``[LEVEL] message`` format on stderr.

Message content never goes into INFO or above anywhere in DEMI; this module only decides
where log lines go and how they look.
"""

from __future__ import annotations

import logging
import sys

from .config import LoggingConfig

LOGGER_NAME = "demi"


def setup_logging(cfg: LoggingConfig, stream: object = None) -> logging.Logger:
    """Configure the ``demi`` logger tree once; calling again replaces its handler."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter(cfg.format))
    logger.addHandler(handler)
    logger.setLevel(cfg.level)
    logger.propagate = False
    return logger
