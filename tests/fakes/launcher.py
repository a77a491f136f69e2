"""Compatibility shim: the fakes moved to :mod:`src.testing.fakes`.

Kept only because ``tests/integration/test_llamacpp_server.py`` (owned by the embedded-model
work) still imports ``free_port`` from here; delete this file once it imports
``src.testing.fakes.launcher`` instead.
"""

from src.testing.fakes.launcher import REPO_ROOT, FakeServer, FakeServerError, free_port

__all__ = ["REPO_ROOT", "FakeServer", "FakeServerError", "free_port"]
