"""An ``httpx`` transport that sends requests with ``aiohttp``.

Why: the official ``ollama`` client is built on httpx, whose default transport stack
(httpcore, anyio, h11: pure Python) cost several times more CPU per request than aiohttp's
C-accelerated parser in the benchmark. The guide wants the official client, so DEMI keeps
it and swaps only the transport underneath, which httpx supports by design. DEMI then runs
one HTTP stack for every provider.

Errors are not translated here: aiohttp's exceptions pass through httpx and the ``ollama``
client untouched and are mapped once, into DEMI's tree, at the Ollama provider's boundary
(``_errors.map_errors`` with ``OLLAMA_ERRORS``, which extends the table the
OpenAI-compatible provider uses).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import aiohttp
import httpx

from ._payload import sliced


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.content.iter_any():
            yield chunk

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One pooled aiohttp session, opened lazily in the running loop."""

    def __init__(self, connect_timeout: float, limit: int) -> None:
        self._connect_timeout = connect_timeout
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
                connector=aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300),
                auto_decompress=False,  # httpx decodes content-encoding itself
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        response = await self.send(request.method, str(request.url), headers, request.content)
        return httpx.Response(
            status_code=response.status,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers],
            stream=_ResponseStream(response, request),
            request=request,
        )

    async def send(
        self, method: str, url: str, headers: list[tuple[str, str]] | dict[str, str],
        body: bytes | AsyncIterable[bytes],
    ) -> aiohttp.ClientResponse:
        """One request on the pooled session; the caller releases the response.

        The Ollama provider forwards raw requests (model management) with it too, so they
        share the pool and the retry below (for a body given whole: a streamed one, a blob
        upload, cannot be sent twice).
        """
        try:
            return await self._request(method, url, headers, body)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            if isinstance(exc, aiohttp.ClientConnectorError) or not isinstance(body, bytes):
                raise
            # A pooled keep-alive connection the server closed (it restarted while we
            # were busy): nothing was answered, so sending once more is safe.
            return await self._request(method, url, headers, body)

    async def _request(
        self, method: str, url: str, headers: list[tuple[str, str]] | dict[str, str],
        body: bytes | AsyncIterable[bytes],
    ) -> aiohttp.ClientResponse:
        data = (sliced(body) if body else None) if isinstance(body, bytes) else body
        return await self._get_session().request(
            method, url, headers=headers, data=data, allow_redirects=False,
        )

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
