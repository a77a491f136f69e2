"""One pass over the loopback ports: which engines answer, for ``status --discover`` and for
the providers DEMI adds by itself.

Every port is first tried with a bare TCP connect, all at once; only ports that accept get
an HTTP session and the identifying GETs. With nothing listening a pass is a few refused
connects (``bench/startup.py`` measures it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence

import aiohttp

from .engines import DEFAULT_PORTS
from .identify import Found, identify, listening


async def scan(
    ports: Sequence[int] = DEFAULT_PORTS, *, timeout: float,  # noqa: ASYNC109 (a bound)
    skip: Collection[int] = (),
) -> list[Found]:
    """The engines answering on ``ports`` (minus ``skip``), in the order of ``ports``.

    ``timeout`` bounds each connect and each GET; nothing here raises for a port that is
    closed, slow or answers nonsense (it is just not in the result).
    """
    wanted = [p for p in dict.fromkeys(ports) if p not in skip]
    if not wanted:
        return []
    open_ports = [p for p, up in zip(
        wanted, await asyncio.gather(*(listening(p, timeout) for p in wanted)), strict=True)
        if up]
    if not open_ports:
        return []
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=timeout),
        connector=aiohttp.TCPConnector(limit=32, force_close=True),
    ) as session:
        found = await asyncio.gather(*(identify(session, p) for p in open_ports))
    return [f for f in found if f is not None]
