"""The bounded store of responses made with ``store: true`` (the default, as OpenAI's).

A stored response is what ``GET /v1/responses/{id}`` returns and what
``previous_response_id`` continues: each entry keeps the whole conversation up to and
including its own output (``history``), so continuing never depends on an older entry
still being there. Evicting an old response therefore never shortens a newer one's
conversation; a response that is gone is a 404, never a conversation silently missing its
earlier turns.

Two stores, one interface (:class:`ResponseStore`), chosen by ``conductor.responses``:

* :class:`MemoryStore` (``store_path: null``, the default): a dict in insertion order;
* :class:`SQLiteStore`: one table in a SQLite file, so a restart keeps the responses. The
  standard library's ``sqlite3`` runs on one worker thread of its own, which owns the
  connection: calls queue there in order and the event loop never blocks on the disk.

Both keep at most ``max_items`` responses (the oldest go first) for at most ``max_age``
seconds after they were made; the clock is injectable (wall-clock seconds, because a
SQLite file outlives the process).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ...core.schema import ResponsesConfig

Clock = Callable[[], float]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    created_at: float
    response: dict[str, Any]
    """The response object, as ``GET /v1/responses/{id}`` answers it."""
    input: list[dict[str, Any]]
    """This request's own input items (``GET /v1/responses/{id}/input_items``)."""
    history: list[dict[str, Any]]
    """The conversation a ``previous_response_id`` naming this response continues: every
    earlier turn's items, this request's input, then its output."""


class ResponseStore(Protocol):
    async def put(self, item: StoredResponse) -> None: ...

    async def get(self, response_id: str) -> StoredResponse | None:
        """The response, or None when it was never stored, was deleted or has expired."""

    async def delete(self, response_id: str) -> bool:
        """Whether there was such a response to delete."""

    async def close(self) -> None: ...


class MemoryStore:
    """Responses in memory, gone when the process ends."""

    def __init__(self, max_items: int, max_age: float, clock: Clock = time.time) -> None:
        self.max_items = max_items
        self.max_age = max_age
        self._clock = clock
        self._items: OrderedDict[str, StoredResponse] = OrderedDict()

    def _expire(self) -> None:
        oldest = self._clock() - self.max_age
        while self._items:
            first = next(iter(self._items.values()))
            if first.created_at >= oldest and len(self._items) <= self.max_items:
                return
            self._items.popitem(last=False)

    async def put(self, item: StoredResponse) -> None:
        self._items[item.id] = item
        self._items.move_to_end(item.id)
        self._expire()

    async def get(self, response_id: str) -> StoredResponse | None:
        self._expire()
        return self._items.get(response_id)

    async def delete(self, response_id: str) -> bool:
        return self._items.pop(response_id, None) is not None

    async def close(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    response TEXT NOT NULL,
    input TEXT NOT NULL,
    history TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_by_age ON responses (created_at);
"""


class SQLiteStore:
    """Responses in a SQLite file, kept across restarts. Open with :meth:`open`."""

    def __init__(self, path: Path, max_items: int, max_age: float,
                 clock: Clock = time.time) -> None:
        self.path = path
        self.max_items = max_items
        self.max_age = max_age
        self._clock = clock
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="demi-responses")
        self._db: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, path: str | Path, max_items: int, max_age: float,
                   clock: Clock = time.time) -> SQLiteStore:
        store = cls(Path(path), max_items, max_age, clock)
        try:
            await store._run(store._connect)
        except BaseException:
            store._worker.shutdown(wait=False)
            raise
        return store

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    # -- on the worker thread --------------------------------------------------------------

    def _connect(self) -> None:
        self.path = self.path.expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        db.commit()
        self._db = db

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the response store is closed")
        return self._db

    def _put(self, item: StoredResponse) -> None:
        db = self._conn()
        with db:  # one transaction: the insert and the trimming
            db.execute(
                "INSERT OR REPLACE INTO responses (id, created_at, response, input, history)"
                " VALUES (?, ?, ?, ?, ?)",
                (item.id, item.created_at, json.dumps(item.response), json.dumps(item.input),
                 json.dumps(item.history)),
            )
            db.execute("DELETE FROM responses WHERE created_at < ?",
                       (self._clock() - self.max_age,))
            db.execute(
                "DELETE FROM responses WHERE id IN (SELECT id FROM responses"
                " ORDER BY created_at DESC, rowid DESC LIMIT -1 OFFSET ?)", (self.max_items,))

    def _get(self, response_id: str) -> StoredResponse | None:
        row = self._conn().execute(
            "SELECT id, created_at, response, input, history FROM responses"
            " WHERE id = ? AND created_at >= ?", (response_id, self._clock() - self.max_age),
        ).fetchone()
        if row is None:
            return None
        return StoredResponse(row[0], row[1], json.loads(row[2]), json.loads(row[3]),
                              json.loads(row[4]))

    def _delete(self, response_id: str) -> bool:
        db = self._conn()
        with db:
            cursor = db.execute("DELETE FROM responses WHERE id = ?", (response_id,))
        return cursor.rowcount > 0

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- the interface ---------------------------------------------------------------------

    async def put(self, item: StoredResponse) -> None:
        await self._run(self._put, item)

    async def get(self, response_id: str) -> StoredResponse | None:
        return await self._run(self._get, response_id)

    async def delete(self, response_id: str) -> bool:
        return await self._run(self._delete, response_id)

    async def close(self) -> None:
        try:
            await self._run(self._close)
        finally:
            self._worker.shutdown(wait=False)


async def open_store(config: ResponsesConfig, clock: Clock = time.time) -> ResponseStore:
    """The store ``conductor.responses`` asks for."""
    if config.store_path is None:
        return MemoryStore(config.max_items, config.max_age, clock)
    return await SQLiteStore.open(config.store_path, config.max_items, config.max_age, clock)
