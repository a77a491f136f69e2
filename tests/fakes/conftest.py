"""Make the fake-server fixtures available to tests/fakes even without the top-level conftest.

``pytest_plugins`` is only allowed in the rootdir conftest, so this registers the plugin
module on demand instead; when the top-level conftest already lists it, this is a no-op.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Register tests.fakes.fixtures once (import_plugin skips an already registered name)."""
    config.pluginmanager.import_plugin("tests.fakes.fixtures")
