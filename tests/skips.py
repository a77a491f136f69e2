"""A skipped test fails the run where it must not skip: ``DEMI_FAIL_ON_SKIP=1`` (.ci/run).

CI installs everything the tests need (llama.cpp, Chromium, the client libraries, the agent
CLIs), so a skip there means something the run was meant to prove went unproved. On a
developer's machine a skip stays a skip.
"""

from __future__ import annotations

import os

import pytest

ENV = "DEMI_FAIL_ON_SKIP"


def enforced() -> bool:
    return os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes")


class SkipGuard:
    """Collects skips; fails the session at its end when skips are not allowed."""

    def __init__(self) -> None:
        self.skipped: list[tuple[str, str]] = []

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
            self.skipped.append((report.nodeid, reason))

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.skipped and enforced() and exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.skipped and enforced():
            terminalreporter.section(f"skipped tests fail this run ({ENV}=1)", red=True)
            for nodeid, reason in self.skipped:
                terminalreporter.line(f"SKIPPED {nodeid}: {reason}")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipGuard(), "demi-skip-guard")
