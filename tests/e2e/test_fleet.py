"""Fleet routing through the conductor process: fakes count the requests each one got.

Each test starts a conductor over real fake-server processes with a routing config, drives
traffic with the ``openai`` client and reads the counts from the fakes' request logs.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from src.core.config import deep_merge
from src.testing.fakes.launcher import FakeServer
from tests.e2e.conftest import MakeConductor
from tests.e2e.helpers import CONFIG_YAML, HI, ConductorProcess
from tests.waiting import wait_until

CHAT_PATHS = ("/api/chat", "/v1/chat/completions")


def fleet(make_demi: MakeConductor, tmp_path: Path, llm: dict[str, Any]) -> ConductorProcess:
    """A conductor with the e2e defaults plus ``llm`` (strategy, providers, ...)."""
    base = yaml.safe_load(CONFIG_YAML % {"grace": 10, "level": "INFO"})
    path = tmp_path / f"fleet{len(list(tmp_path.glob('fleet*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(deep_merge(base, {"llm": llm})), encoding="utf-8")
    return make_demi(env={"DEMI_CONFIG": str(path)})


def chats(fake: FakeServer) -> list[dict[str, Any]]:
    """The chat requests a fake received (health probes left out)."""
    return [r for r in fake.requests() if r["path"] in CHAT_PATHS]


def client(demi: ConductorProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{demi.url}/v1", api_key="x", max_retries=0,
                              timeout=30)


async def ask(oai: openai.AsyncOpenAI, messages: list[dict[str, Any]] = HI,
              headers: dict[str, str] | None = None) -> tuple[str, str]:
    """(serving provider, reply text) of one request; raises unless it was answered."""
    raw = await oai.chat.completions.with_raw_response.create(
        model="demi", messages=messages, extra_headers=headers)  # type: ignore[arg-type]
    return raw.headers["x-demi-provider"], raw.parse().choices[0].message.content or ""


def metric(demi: ConductorProcess, name: str) -> float | None:
    """One sample of /metrics by its full name with labels, e.g. ``x{provider="a"}``."""
    with urllib.request.urlopen(demi.url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


@pytest.fixture
def box(fake_server_factory: Callable[..., FakeServer]) -> FakeServer:
    """A second fake Ollama, configured as a `kind: ollama` entry of llm.providers."""
    return fake_server_factory("ollama", args=["--reply", "Hello from the box."])


def box_entry(box: FakeServer, **kw: Any) -> dict[str, Any]:
    return {"name": "box", "kind": "ollama", "base_url": box.url, "model": "llama3.2:1b",
            "keep_alive": "7m", "context_window": 4096, **kw}


async def test_weighted_round_robin_spread_over_extra_ollama_and_openai_servers(
    make_demi: MakeConductor, tmp_path: Path, ollama_fake: FakeServer,
    lmstudio_fake: FakeServer, box: FakeServer,
    fake_server_factory: Callable[..., FakeServer],
) -> None:
    """400 requests under round_robin with weights 3:1:2:2 over the pair, a kind: ollama
    and a kind: openai entry land within 5 points of each weight's share; the ollama
    entry is a full Ollama provider (num_ctx, keep_alive)."""
    vbox = fake_server_factory("lmstudio")
    demi = fleet(make_demi, tmp_path, {
        "routing": {"strategy": "round_robin", "weights": {"ollama": 3}},
        "providers": [box_entry(box, tags=["gpu"], weight=2),
                      {"name": "vbox", "kind": "openai", "base_url": vbox.url, "weight": 2}],
    })
    async with client(demi) as oai:
        served = Counter([(await ask(oai))[0] for _ in range(400)])
    counts = {"ollama": len(chats(ollama_fake)), "lmstudio": len(chats(lmstudio_fake)),
              "box": len(chats(box)), "vbox": len(chats(vbox))}
    assert counts == dict(served)
    for name, share in {"ollama": 3 / 8, "lmstudio": 1 / 8, "box": 2 / 8,
                        "vbox": 2 / 8}.items():
        assert abs(counts[name] / 400 - share) <= 0.05, counts
    sent = chats(box)[0]["json"]
    assert sent["options"]["num_ctx"] == 4096 and sent["keep_alive"] == "7m"
    row = demi.get_json("/status")["providers"]["box"]
    assert (row["kind"], row["weight"], row["tags"]) == ("ollama", 2, ["gpu"])
    assert metric(demi, 'demi_provider_quality_score{provider="box"}') is not None


async def test_canary_share_then_rollback_on_errors_then_on_slow_first_token(
    make_demi: MakeConductor, tmp_path: Path, ollama_fake: FakeServer,
    lmstudio_fake: FakeServer,
) -> None:
    """The canary gets its percent; 500s roll it back to 0 % (logged once, in /status and
    /metrics); resumed through POST /admin/canary, a slow first token rolls it back again.
    Every request is answered throughout."""
    demi = fleet(make_demi, tmp_path, {
        "failure_threshold": 1000,  # keep the canary's circuit closed: judge the canary alone
        "routing": {"strategy": "canary", "canary": {
            "provider": "lmstudio", "percent": 25, "window": 8, "max_error_rate": 0.25,
            "max_ttft_ratio": 3.0, "ttft_floor": 0.1}},
    })
    async with client(demi) as oai:
        served = Counter([(await ask(oai))[0] for _ in range(80)])
        assert served == {"ollama": 60, "lmstudio": 20}

        lmstudio_fake.control(mode="status", status=500)
        for _ in range(200):
            assert (await ask(oai))[0] == "ollama"
            if demi.get_json("/admin/canary")["state"] == "rolled_back":
                break
        state = demi.get_json("/status")["canary"]
        assert state["percent"] == 0 and state["rollback"]["cause"] == "error rate"
        assert metric(demi, 'demi_canary_rolled_back{provider="lmstudio"}') == 1
        lmstudio_fake.reset()
        before = len(chats(lmstudio_fake))
        for _ in range(40):
            assert (await ask(oai))[0] == "ollama"
        assert len(chats(lmstudio_fake)) == before  # rolled back: no canary traffic

        lmstudio_fake.control(first_token_delay=1.0)
        resumed = demi.post_json("/admin/canary", {})
        assert resumed["percent"] == 25 and resumed["state"] == "running"
        for _ in range(200):
            await ask(oai)
            if demi.get_json("/admin/canary")["state"] == "rolled_back":
                break
        rollback = demi.get_json("/admin/canary")["rollback"]
        assert rollback["cause"] == "time to first token"
        assert rollback["p95_ttft_s"] >= 1.0 > 3.0 * rollback["baseline_p95_ttft_s"]
    logs = demi.stderr() + demi.stdout()
    assert logs.count("Canary lmstudio rolled back") == 2, logs


async def test_admin_canary_refuses_bad_input(
    make_demi: MakeConductor, tmp_path: Path,
) -> None:
    """POST /admin/canary answers 400 for a bad percent or provider, 409 off the canary."""
    demi = fleet(make_demi, tmp_path, {"routing": {"strategy": "canary", "canary": {
        "provider": "lmstudio", "percent": 10}}})
    for body in ({"percent": 150}, {"percent": "x"}, {"percent": True}, {"provider": "nope"},
                 {"pct": 1}):
        with pytest.raises(Exception, match="400"):
            demi.post_json("/admin/canary", body)
    plain = fleet(make_demi, tmp_path, {})
    with pytest.raises(Exception, match="409"):
        plain.post_json("/admin/canary", {"percent": 5})


async def test_affinity_by_workload(
    make_demi: MakeConductor, tmp_path: Path, ollama_fake: FakeServer,
    lmstudio_fake: FakeServer,
) -> None:
    """X-DEMI-Workload: code goes to the provider affinity names; other work to the chain."""
    demi = fleet(make_demi, tmp_path, {"routing": {"strategy": "affinity",
                                                   "affinity": {"code": ["lmstudio"]}}})
    async with client(demi) as oai:
        code = [(await ask(oai, headers={"X-DEMI-Workload": "code"}))[0] for _ in range(10)]
        chat = [(await ask(oai, headers={"X-DEMI-Workload": "chat"}))[0] for _ in range(10)]
        plain = [(await ask(oai))[0] for _ in range(10)]
    assert set(code) == {"lmstudio"} and set(chat) == {"ollama"} and set(plain) == {"ollama"}
    assert len(chats(lmstudio_fake)) == 10 and len(chats(ollama_fake)) == 20


async def test_sticky_conversations_stay_on_one_provider(
    make_demi: MakeConductor, tmp_path: Path, ollama_fake: FakeServer,
    lmstudio_fake: FakeServer,
) -> None:
    """Under round_robin (sticky on by default) every turn of a conversation goes where its
    first turn went, while first turns still spread; /metrics counts every hit."""
    demi = fleet(make_demi, tmp_path, {"routing": {"strategy": "round_robin"}})
    homes: dict[int, set[str]] = {}
    async with client(demi) as oai:
        convs: list[list[dict[str, Any]]] = [
            [{"role": "user", "content": f"conversation {i}"}] for i in range(10)]
        for _turn in range(5):
            for i, conv in enumerate(convs):
                provider, text = await ask(oai, conv)
                homes.setdefault(i, set()).add(provider)
                conv += [{"role": "assistant", "content": text},
                         {"role": "user", "content": f"next {len(conv)}"}]
    assert all(len(h) == 1 for h in homes.values()), homes
    assert Counter(next(iter(h)) for h in homes.values()) == {"ollama": 5, "lmstudio": 5}
    assert metric(demi, "demi_sticky_hits_total") == 40
    assert metric(demi, "demi_sticky_lookups_total") == 40
    assert demi.get_json("/status")["sticky"]["hit_rate"] == 1.0


STRATEGY_CONFIGS: dict[str, dict[str, Any]] = {
    "failover": {},
    "round_robin": {},
    "nearest": {"region": "home"},
    "quality": {},
    "canary": {"canary": {"provider": "lmstudio", "percent": 30}},
    "affinity": {"affinity": {"code": ["ollama"]}},
}


@pytest.mark.parametrize("strategy", sorted(STRATEGY_CONFIGS))
async def test_every_strategy_survives_the_primary_sigkilled_mid_run(
    make_demi: MakeConductor, tmp_path: Path, ollama_fake: FakeServer,
    lmstudio_fake: FakeServer, strategy: str,
) -> None:
    """Requests in flight at the primary when it is SIGKILLed, and every one after, are
    answered (by the other provider)."""
    demi = fleet(make_demi, tmp_path, {
        "ollama": {"region": "home"},
        "routing": {"strategy": strategy, **STRATEGY_CONFIGS[strategy]},
    })
    headers = {"X-DEMI-Workload": "code"}
    async with client(demi) as oai:
        before = [await ask(oai, headers=headers) for _ in range(10)]
        assert "ollama" in {p for p, _ in before}
        ollama_fake.control(mode="hang")
        ollama_fake.clear_requests()
        in_flight = [asyncio.create_task(ask(oai, headers=headers)) for _ in range(8)]

        async def hanging_at_primary() -> bool:
            return bool(await asyncio.to_thread(chats, ollama_fake))

        await wait_until(hanging_at_primary, "a request to hang at the primary")
        ollama_fake.kill()
        during = await asyncio.gather(*in_flight)
        after = [await ask(oai, headers=headers) for _ in range(10)]
    assert all(text for _, text in [*before, *during, *after])
    assert {p for p, _ in after} == {"lmstudio"}


async def test_quality_moves_traffic_to_the_reliable_provider(
    make_demi: MakeConductor, tmp_path: Path, ollama_fake: FakeServer,
    lmstudio_fake: FakeServer,
) -> None:
    """Under quality, a primary that fails requests scores below the provider that served
    them, so later requests start there (not as a fallback); the scores are in /metrics."""
    demi = fleet(make_demi, tmp_path, {"failure_threshold": 100,
                                       "routing": {"strategy": "quality"}})
    async with client(demi) as oai:
        assert (await ask(oai))[0] == "ollama"
        ollama_fake.control(mode="status", status=500, times=2)
        assert [(await ask(oai))[0] for _ in range(2)] == ["lmstudio"] * 2
        raw = await oai.chat.completions.with_raw_response.create(model="demi", messages=HI)
    assert raw.headers["x-demi-provider"] == "lmstudio"
    assert raw.headers["x-demi-fallback"] == "false"
    ollama_score = metric(demi, 'demi_provider_quality_score{provider="ollama"}')
    lmstudio_score = metric(demi, 'demi_provider_quality_score{provider="lmstudio"}')
    assert ollama_score is not None and lmstudio_score is not None
    assert lmstudio_score > ollama_score


async def test_nearest_prefers_the_configured_region(
    make_demi: MakeConductor, tmp_path: Path, ollama_fake: FakeServer,
    lmstudio_fake: FakeServer,
) -> None:
    """Under nearest, the provider in routing.region starts every request while it is up."""
    demi = fleet(make_demi, tmp_path, {
        "ollama": {"region": "far"}, "lmstudio": {"region": "home"},
        "routing": {"strategy": "nearest", "region": "home"},
    })
    async with client(demi) as oai:
        served = [(await ask(oai))[0] for _ in range(10)]
    assert set(served) == {"lmstudio"} and len(chats(ollama_fake)) == 0
    assert demi.get_json("/status")["active_provider"] == "lmstudio"
