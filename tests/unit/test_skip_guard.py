"""The skip guard: a skip fails the run only where DEMI_FAIL_ON_SKIP says it must."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]
ARGS = ("-p", "tests.skips", "-p", "no:cacheprovider",
        "-o", "asyncio_default_fixture_loop_scope=function")

SKIPPING = """
import pytest

def test_passes():
    assert True

@pytest.mark.skip(reason="llama.cpp is not installed")
def test_needs_llama():
    pass
"""


@pytest.mark.parametrize(("value", "code"), [("1", 1), ("", 0)], ids=["enforced", "not set"])
def test_a_skip_fails_the_run_only_when_enforced(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str, code: int,
) -> None:
    """With DEMI_FAIL_ON_SKIP=1 a skipped test makes the run fail and is listed with its
    reason; without it the same run passes."""
    monkeypatch.setenv("DEMI_FAIL_ON_SKIP", value)
    pytester.makepyfile(SKIPPING)
    result = pytester.runpytest(*ARGS)
    assert result.ret == code
    result.assert_outcomes(passed=1, skipped=1)
    listed = "SKIPPED test_a_skip_fails_the_run_only_when_enforced.py::test_needs_llama"
    assert any(listed in line for line in result.outlines) == bool(value)


def test_no_skip_no_failure(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Enforced, a run without skips passes."""
    monkeypatch.setenv("DEMI_FAIL_ON_SKIP", "1")
    pytester.makepyfile("def test_ok():\n    assert True\n")
    assert pytester.runpytest(*ARGS).ret == 0
