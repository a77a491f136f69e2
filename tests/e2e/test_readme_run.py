"""The README's run command as a newcomer runs it: a fresh clone, ``make run``, one curl.

Clones the committed repository into a scratch folder, runs ``make run`` there (which makes
its own virtualenv and installs DEMI with the embedded model; llama.cpp comes from the wheel
directory ``make`` built earlier on this machine, or is compiled), and asks one question
with curl. Ollama and LM Studio addresses point at closed ports, so the embedded model must
answer.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from src.testing.fakes.launcher import REPO_ROOT, free_port
from tests.integration.engines import needs_embedded

pytestmark = [pytest.mark.integration, needs_embedded]

INSTALL_AND_START = 1200.0
"""Seconds for the clone's install (minutes if llama.cpp must compile) and start."""


@pytest.mark.skipif(
    not (shutil.which("git") and shutil.which("make") and shutil.which("curl")),
    reason="needs git, make and curl",
)
@pytest.mark.skipif(
    not (REPO_ROOT / ".git").exists(), reason="needs the repository's git history to clone"
)
def test_make_run_from_a_fresh_clone_answers_curl(tmp_path: Path) -> None:
    """`make run` in a fresh clone serves; a curl question gets the embedded model's answer."""
    clone = tmp_path / "demi"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(clone)], check=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DEMI_", "OLLAMA_", "LMSTUDIO_", "VIRTUAL_ENV"))}
    env.update({
        "DEMI_PORT": str(port),
        "OLLAMA_BASE_URL": f"http://127.0.0.1:{free_port()}",
        "LMSTUDIO_BASE_URL": f"http://127.0.0.1:{free_port()}",
    })
    log = (tmp_path / "make-run.log").open("w+b")
    run = subprocess.Popen(
        ["make", "run"], cwd=clone, env=env, stdin=subprocess.DEVNULL,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + INSTALL_AND_START
        body = json.dumps({
            "model": "demi", "max_tokens": 24,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
        })
        while True:
            assert run.poll() is None, _tail(log)
            assert time.monotonic() < deadline, _tail(log)
            up = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                 f"http://127.0.0.1:{port}/health"],
                capture_output=True, text=True, check=False,
            )
            if up.stdout == "200":
                break
            time.sleep(1)
        answer = subprocess.run(
            ["curl", "-s", "-D", "-", f"http://127.0.0.1:{port}/v1/chat/completions",
             "-H", "Content-Type: application/json", "-d", body],
            capture_output=True, text=True, check=True, timeout=180,
        ).stdout
        head, _, payload = answer.partition("\n\n")  # text mode turned CRLF into LF
        assert "x-demi-provider: embedded" in head.lower(), answer
        assert json.loads(payload)["choices"][0]["message"]["content"].strip(), answer
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGTERM)
            try:
                run.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
        log.close()


def _tail(log: object) -> str:
    assert hasattr(log, "seek") and hasattr(log, "read")
    log.seek(0)
    return log.read().decode(errors="replace")[-3000:]
