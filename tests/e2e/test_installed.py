"""DEMI installed as a package, outside the checkout: a ``demi`` command, no ``src``.

A fresh venv in a temporary folder gets DEMI built from a copy of the checkout; its
dependencies come from the development venv (a ``.pth`` line naming that venv's
site-packages: a plain path line does not run the ``.pth`` files inside it, so the
checkout's editable install is not loaded), so nothing is downloaded. The installed
``demi serve`` then answers a chat from a fake Ollama, from a working directory that is not
the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import urllib.request
import venv
from collections.abc import Callable
from pathlib import Path

import pytest

from src.testing.fakes.launcher import REPO_ROOT, FakeServer, free_port
from tests.e2e.helpers import HI, OLLAMA_REPLY
from tests.waiting import wait_until_sync

pytestmark = pytest.mark.timeout(300)
IGNORED = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "build",
                                 "dist", ".mypy_cache", ".ruff_cache", ".pytest_cache")


def site_packages(prefix: Path) -> Path:
    return Path(sysconfig.get_path("purelib", vars={"base": str(prefix),
                                                    "platbase": str(prefix)}))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with DEMI installed from a copy of the checkout; its prefix."""
    root = tmp_path_factory.mktemp("installed")
    source = root / "source"
    shutil.copytree(REPO_ROOT, source, ignore=IGNORED)
    prefix = root / "venv"
    venv.EnvBuilder(with_pip=False).create(prefix)
    dev_site = Path(sysconfig.get_path("purelib"))
    (site_packages(prefix) / "dev-venv-deps.pth").write_text(f"{dev_site}\n")
    python = prefix / "bin" / "python"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-build-isolation", "--no-index", "--quiet", str(source)],
        capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return prefix


def test_the_installed_package_is_demi_with_its_data_and_no_src(installed: Path) -> None:
    """site-packages holds ``demi`` (with defaults.yaml, the status page and the READMEs)
    and no top-level ``src``; the engine child is importable under the installed name."""
    site = site_packages(installed)
    assert not (site / "src").exists()
    for data in ("core/defaults.yaml", "conductor/http/static/status.html",
                 "conductor/README.md", "testing/fakes/README.md"):
        assert (site / "demi" / data).is_file(), data
    probe = subprocess.run(
        [str(installed / "bin" / "python"), "-c",
         "import demi, importlib.util; print(demi.__file__); "
         "print(importlib.util.find_spec('demi.llm.engine.child') is not None)"],
        capture_output=True, text=True, cwd=installed, timeout=60,
    )
    where, child = probe.stdout.split()
    assert Path(where).is_relative_to(site) and child == "True", probe.stderr


def test_demi_serve_answers_from_outside_the_checkout(
    installed: Path, tmp_path: Path, fake_server_factory: Callable[..., FakeServer],
) -> None:
    """``demi --help`` names itself ``demi``; ``demi serve`` run from a scratch folder
    answers a chat through the fake Ollama."""
    demi = installed / "bin" / "demi"
    helped = subprocess.run([str(demi), "--help"], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path)
    assert helped.returncode == 0 and "Usage: demi " in helped.stdout
    ollama = fake_server_factory("ollama")
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DEMI_", "OLLAMA_", "LMSTUDIO_", "PYTHON"))}
    env.update(OLLAMA_BASE_URL=ollama.url, LMSTUDIO_BASE_URL=f"http://127.0.0.1:{free_port()}",
               DEMI_EMBEDDED_ENABLED="false", DEMI_PORT=str(port))
    with open(tmp_path / "demi.log", "wb") as log:
        proc = subprocess.Popen([str(demi), "serve"], cwd=tmp_path, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"

            def up() -> bool:
                assert proc.poll() is None, (tmp_path / "demi.log").read_text()
                try:
                    with urllib.request.urlopen(url + "/health", timeout=1):
                        return True
                except OSError:
                    return False

            wait_until_sync(up, "the installed demi to listen", within=60)
            body = json.dumps({"model": "demi", "messages": HI, "stream": False}).encode()
            with urllib.request.urlopen(urllib.request.Request(
                    url + "/api/chat", data=body), timeout=30) as resp:
                answer = json.loads(resp.read())
                served_by = resp.headers["X-DEMI-Provider"]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert (served_by, answer["message"]["content"]) == ("ollama", OLLAMA_REPLY)
