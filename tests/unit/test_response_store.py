"""The bounded response store, in memory and in SQLite, with an injected clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from src.conductor.responses.store import (
    MemoryStore,
    ResponseStore,
    SQLiteStore,
    StoredResponse,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def item(n: int, at: float) -> StoredResponse:
    return StoredResponse(f"resp_{n}", at, {"id": f"resp_{n}", "output": [n]},
                          [{"role": "user", "content": str(n)}],
                          [{"role": "user", "content": str(n)}, {"type": "message"}])


Opener = Callable[[int, float], Awaitable[ResponseStore]]


@pytest.fixture(params=["memory", "sqlite"])
async def make(request: pytest.FixtureRequest,
               tmp_path: Path) -> AsyncIterator[tuple[Clock, Opener]]:
    """(clock, opener): ``await opener(max_items, max_age)`` opens a store of each kind."""
    clock = Clock()
    opened: list[ResponseStore] = []

    async def opener(max_items: int, max_age: float) -> ResponseStore:
        store: ResponseStore
        if request.param == "memory":
            store = MemoryStore(max_items, max_age, clock)
        else:
            store = await SQLiteStore.open(tmp_path / "r.db", max_items, max_age, clock)
        opened.append(store)
        return store

    try:
        yield clock, opener
    finally:
        for store in opened:
            await store.close()


async def test_put_get_delete(make: tuple[Clock, Opener]) -> None:
    """A stored response comes back whole; deleting it says whether it was there."""
    clock, opener = make
    store = await opener(10, 60)
    await store.put(item(1, clock.now))
    got = await store.get("resp_1")
    assert got == item(1, clock.now)
    assert await store.delete("resp_1") is True
    assert await store.get("resp_1") is None
    assert await store.delete("resp_1") is False


async def test_the_oldest_go_past_max_items(make: tuple[Clock, Opener]) -> None:
    """Past max_items the oldest response is dropped, the newer ones kept."""
    clock, opener = make
    store = await opener(2, 60)
    for n in range(3):
        clock.now += 1
        await store.put(item(n, clock.now))
    assert await store.get("resp_0") is None
    assert [(await store.get(f"resp_{n}")) is not None for n in (1, 2)] == [True, True]


async def test_responses_expire_after_max_age(make: tuple[Clock, Opener]) -> None:
    """A response older than max_age is gone; a younger one stays."""
    clock, opener = make
    store = await opener(10, 60)
    await store.put(item(1, clock.now))
    clock.now += 30
    await store.put(item(2, clock.now))
    clock.now += 31
    assert await store.get("resp_1") is None
    assert await store.get("resp_2") is not None


async def test_sqlite_keeps_responses_across_a_reopen(tmp_path: Path) -> None:
    """A reopened SQLite store (a restart) has what the old one stored."""
    clock = Clock()
    first = await SQLiteStore.open(tmp_path / "sub" / "r.db", 10, 60, clock)
    await first.put(item(7, clock.now))
    await first.close()
    again = await SQLiteStore.open(tmp_path / "sub" / "r.db", 10, 60, clock)
    try:
        assert await again.get("resp_7") == item(7, clock.now)
    finally:
        await again.close()
