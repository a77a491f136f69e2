"""The fake Ollama's model store (``/api/pull``, ``/api/push``, ``/api/delete``,
``/api/copy``, ``/api/create``) and embeddings (``/api/embed``, ``/api/embeddings``),
answered as the real server answers them.

``pull`` streams NDJSON progress (``pulling manifest``, one ``pulling <digest>`` line with
``total``/``completed``, ``verifying sha256 digest``, ``writing manifest``, ``success``) or,
with ``"stream": false``, the last status alone; the pulled model is then listed by
``/api/tags``. ``delete`` of a model that is not there is a 404, like Ollama's.
"""

from __future__ import annotations

import hashlib
from typing import Any

from aiohttp import web

from .abilities import embedding
from .control import STATE, FakeState
from .engine import dumps

NDJSON = "application/x-ndjson"


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, dumps=dumps)


def _name(body: Any, *keys: str) -> str | None:
    if not isinstance(body, dict):
        return None
    for key in keys:
        if isinstance(body.get(key), str) and body[key]:
            return str(body[key])
    return None


async def _progress(request: web.Request, body: dict[str, Any],
                    lines: list[dict[str, Any]]) -> web.StreamResponse:
    """Ollama's progress: every line streamed, or the last alone with ``stream: false``."""
    if body.get("stream") is False:
        return web.json_response(lines[-1], dumps=dumps)
    resp = web.StreamResponse(headers={"Content-Type": NDJSON})
    await resp.prepare(request)
    for line in lines:
        await resp.write((dumps(line) + "\n").encode())
    await resp.write_eof()
    return resp


async def pull(request: web.Request) -> web.StreamResponse:
    """``POST /api/pull``: the model appears in the store."""
    body = request["json"]
    name = _name(body, "model", "name")
    if name is None:
        return _error(400, "model is required")
    state: FakeState = request.app[STATE]
    digest = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
    size = 1_000_000
    lines: list[dict[str, Any]] = [
        {"status": "pulling manifest"},
        {"status": f"pulling {digest[7:19]}", "digest": digest, "total": size, "completed": 0},
        {"status": f"pulling {digest[7:19]}", "digest": digest, "total": size,
         "completed": size},
        {"status": "verifying sha256 digest"},
        {"status": "writing manifest"},
        {"status": "success"},
    ]
    if name not in state.models:
        state.models.append(name)
    return await _progress(request, body, lines)


async def push(request: web.Request) -> web.StreamResponse:
    """``POST /api/push``: progress lines, as for pull."""
    body = request["json"]
    name = _name(body, "model", "name")
    if name is None:
        return _error(400, "model is required")
    lines = [{"status": "retrieving manifest"}, {"status": "pushing manifest"},
             {"status": "success"}]
    return await _progress(request, body, lines)


async def create(request: web.Request) -> web.StreamResponse:
    """``POST /api/create``: the new model joins the store."""
    body = request["json"]
    name = _name(body, "model", "name")
    if name is None:
        return _error(400, "model is required")
    state: FakeState = request.app[STATE]
    if name not in state.models:
        state.models.append(name)
    lines = [{"status": "reading model metadata"}, {"status": "writing manifest"},
             {"status": "success"}]
    return await _progress(request, body, lines)


async def delete(request: web.Request) -> web.StreamResponse:
    """``DELETE /api/delete``: 200 with an empty body, or 404 if there is no such model."""
    name = _name(request["json"], "model", "name")
    state: FakeState = request.app[STATE]
    if name is None:
        return _error(400, "model is required")
    if name not in state.models:
        return _error(404, f"model '{name}' not found")
    state.models.remove(name)
    return web.Response(status=200)


async def copy(request: web.Request) -> web.StreamResponse:
    """``POST /api/copy``: 200 with an empty body."""
    body = request["json"]
    source, destination = _name(body, "source"), _name(body, "destination")
    state: FakeState = request.app[STATE]
    if source is None or destination is None:
        return _error(400, "source and destination are required")
    if source not in state.models:
        return _error(404, f"model '{source}' not found")
    state.models.append(destination)
    return web.Response(status=200)


async def embed(request: web.Request) -> web.StreamResponse:
    """``POST /api/embed``: one vector per input; 404 if the model is not pulled."""
    body = request["json"]
    name = _name(body, "model")
    state: FakeState = request.app[STATE]
    if name is None:
        return _error(400, "model is required")
    if canonical(name) not in {canonical(m) for m in state.models}:
        return _error(404, f"model \"{name}\" not found, try pulling it first")
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return _error(400, "invalid input type")
    return web.json_response({
        "model": name, "embeddings": [embedding(t) for t in texts],
        "total_duration": 1000, "load_duration": 0,
        "prompt_eval_count": sum(1 + len(t) // 4 for t in texts)}, dumps=dumps)


async def legacy_embeddings(request: web.Request) -> web.StreamResponse:
    """``POST /api/embeddings``: ``{"embedding": [...]}`` for one ``prompt``."""
    body = request["json"]
    name = _name(body, "model")
    state: FakeState = request.app[STATE]
    if name is None or canonical(name) not in {canonical(m) for m in state.models}:
        return _error(404, f"model \"{name}\" not found, try pulling it first")
    return web.json_response({"embedding": embedding(str(body.get("prompt") or ""))},
                             dumps=dumps)


async def blob_exists(request: web.Request) -> web.StreamResponse:
    """``HEAD /api/blobs/:digest``: 200 if the blob was pushed, else 404 (no body)."""
    state: FakeState = request.app[STATE]
    return web.Response(status=200 if request.match_info["digest"] in state.blobs else 404)


async def push_blob(request: web.Request) -> web.StreamResponse:
    """``POST /api/blobs/:digest``: 201 when the body's sha256 is the digest, else 400."""
    digest = request.match_info["digest"]
    data = await request.read()
    if digest != "sha256:" + hashlib.sha256(data).hexdigest():
        return _error(400, "digest mismatch")
    request.app[STATE].blobs.add(digest)
    return web.Response(status=201)


def canonical(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def add_manage_routes(app: web.Application) -> None:
    app.router.add_post("/api/embed", embed)
    app.router.add_post("/api/embeddings", legacy_embeddings)
    app.router.add_post("/api/pull", pull)
    app.router.add_post("/api/push", push)
    app.router.add_post("/api/create", create)
    app.router.add_post("/api/copy", copy)
    app.router.add_delete("/api/delete", delete)
    app.router.add_head("/api/blobs/{digest}", blob_exists)
    app.router.add_post("/api/blobs/{digest}", push_blob)
