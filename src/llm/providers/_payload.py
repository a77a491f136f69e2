"""Request bodies that cost their size once on the way out.

A chat carrying a 20 MB image is serialised once, by orjson, straight to ``bytes`` (the
standard library would build a ``str`` and then encode it: two copies). aiohttp would then
copy those bytes again while sending them: it joins the first write to the request head,
and on Python 3.11 asyncio's transport copies whatever the socket did not take at once into
its buffer. :class:`SlicedBody` hands the socket slices of the one buffer instead; the
OpenAI-compatible providers send their JSON that way, and the Ollama provider's transport
sends the body the ``ollama`` client built that way.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import BytesPayload

SLICE = 256 * 1024
"""Bytes per write: small enough that no copy of a slice matters."""


def dumps(value: Any) -> bytes:
    """``value`` as JSON bytes (what the standard library accepts, orjson takes too)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        # An integer past 64 bits, a subclass orjson refuses: the slow path, same JSON.
        return json.dumps(value, separators=(",", ":")).encode()


class SlicedBody(BytesPayload):
    """Bytes written to the connection ``SLICE`` bytes at a time (JSON unless told)."""

    def __init__(self, data: bytes, content_type: str = "application/json") -> None:
        super().__init__(data, content_type=content_type)

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        view = memoryview(self._value)
        if content_length is not None:
            view = view[:content_length]
        for start in range(0, len(view), SLICE):
            await writer.write(view[start:start + SLICE])


def sliced(data: bytes) -> bytes | SlicedBody:
    """``data`` as it is when small (the fast path), sliced when large."""
    return data if len(data) <= SLICE else SlicedBody(data)


def json_body(value: Any) -> bytes | SlicedBody:
    """The JSON body for ``value``, serialised once."""
    return sliced(dumps(value))
