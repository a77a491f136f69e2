"""Fake LM Studio server: a real HTTP process speaking LM Studio's OpenAI-compatible API.

Run from the repository root::

    python -m src.testing.fakes.fake_lmstudio --host 127.0.0.1 --port 0
        [--model qwen2.5-7b-instruct ...]
        [--loaded MODEL ...] [--jit] [--reply TEXT | --reply-tokens N]

It prints ``READY <port>`` once listening.  Routes: ``GET /v1/models``,
``POST /v1/chat/completions``, ``POST /v1/completions``, native ``GET /api/v0/models`` (with
``state``, ``max_context_length``, ``type``) and ``POST /api/v0/chat/completions`` (adds
``stats``), plus the ``/_control`` plane of :mod:`src.testing.fakes.control`.

LM Studio quirks reproduced because DEMI's fallback logic depends on them:

* every ``--model`` is loaded unless ``--loaded`` says otherwise;
* a request naming a loaded (or, with ``jit``, a downloaded) model is served by it; any other
  name is silently served by the loaded model when exactly one is loaded; with none loaded the
  answer is 400 ``No models loaded. ...`` (``invalid_request_error``, ``param: "model"``);
  with several loaded it is 404 ``model_not_found``;
* ``/v1/models`` lists only loaded models unless ``jit`` is on (then every downloaded model);
* ``loading`` mode answers llama.cpp-style 503 ``{"error":{"code":503,"message":"Loading model",
  "type":"unavailable_error"}}``;
* ``error_shape: "string"`` produces the older builds' ``{"error": "<text>"}``.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from aiohttp import web

from .control import (
    BODY_LIMIT,
    STATE,
    Behaviour,
    FakeState,
    add_control_routes,
    record_requests,
)
from .engine import answer_whole, base_arg_parser, dumps, preamble, serve
from .openai_api import JSON_TYPE, OpenAIRoutes

NO_MODELS = (
    "No models loaded. Please load a model in the developer page or use the `lms load` command."
)
CONTEXT_LENGTH = 32768


def model_type(name: str) -> str:
    """LM Studio's ``type`` field, guessed from the name like a human would."""
    lowered = name.lower()
    if "embed" in lowered:
        return "embeddings"
    return "vlm" if "-vl" in lowered or "vision" in lowered else "llm"


class LMStudioOpenAI(OpenAIRoutes):
    """LM Studio flavour of the OpenAI routes."""

    accepts_json_object = False

    status_messages: ClassVar[dict[int, tuple[str, str, str | None]]] = {
        400: (NO_MODELS, "invalid_request_error", None),
        401: ("Invalid API key provided.", "invalid_request_error", "invalid_api_key"),
        404: (
            'Model "{model}" not found. Please check the model identifier.',
            "invalid_request_error",
            "model_not_found",
        ),
        429: ("Too many requests. Please retry later.", "rate_limit_error", "rate_limit_exceeded"),
        500: (
            "The model has crashed without additional information. (Exit code: null)",
            "server_error",
            None,
        ),
        503: ("Service unavailable: the server is busy.", "server_error", None),
    }

    def resolve_model(
        self, state: FakeState, requested: Any, behaviour: Behaviour
    ) -> tuple[str | None, web.Response | None]:
        if isinstance(requested, str) and (
            requested in state.loaded or (state.jit and requested in state.models)
        ):
            return requested, None
        if len(state.loaded) == 1:
            return state.loaded[0], None
        if not state.loaded:
            return None, self.error(
                400,
                NO_MODELS,
                type_="invalid_request_error",
                param="model",
                shape=behaviour.error_shape,
            )
        return None, self.error(
            404,
            f'Model "{requested}" not found. Please check the model identifier.',
            type_="invalid_request_error",
            param="model",
            code="model_not_found",
            shape=behaviour.error_shape,
        )

    def model_list(self, state: FakeState) -> dict[str, Any]:
        ids = state.models if state.jit else state.loaded
        return {
            "object": "list",
            "data": [{"id": m, "object": "model", "owned_by": "organization_owner"} for m in ids],
        }

    def loading_response(self) -> web.Response:
        return web.json_response(
            {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}},
            status=503,
            dumps=dumps,
        )

    def extra_fields(self, request: web.Request, tokens: int, started: float) -> dict[str, Any]:
        if not request.get("v0"):
            return {}
        elapsed = max(time.monotonic() - started, 1e-6)
        return {
            "stats": {
                "tokens_per_second": round(tokens / elapsed, 3),
                "time_to_first_token": round(elapsed, 6),
                "generation_time": round(elapsed, 6),
                "stop_reason": "eosFound",
            }
        }

    def add_routes(self, app: web.Application) -> None:
        super().add_routes(app)
        app.router.add_get("/api/v0/models", self.native_models)
        app.router.add_post("/api/v0/chat/completions", self.native_chat)

    async def native_chat(self, request: web.Request) -> web.StreamResponse:
        """``POST /api/v0/chat/completions``: the OpenAI route plus ``stats``."""
        request["v0"] = True
        return await self.chat_completions(request)

    async def native_models(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/v0/models``: every downloaded model with its load state (a health route)."""
        state = request.app[STATE]
        behaviour = state.plan("health")

        def err(status: int, message: str | None) -> web.Response:
            return self.status_error(behaviour, None, status, message)

        early = await preamble(request, behaviour, error=err, loading=self.loading_response)
        if early is not None:
            return early

        def body() -> bytes:
            data = []
            for m in state.models:
                entry: dict[str, Any] = {
                    "id": m,
                    "object": "model",
                    "type": model_type(m),
                    "publisher": "lmstudio-community",
                    "arch": m.split("-", 1)[0].split(".", 1)[0],
                    "compatibility_type": "gguf",
                    "quantization": "Q4_K_M",
                    "state": "loaded" if m in state.loaded else "not-loaded",
                    "max_context_length": CONTEXT_LENGTH,
                }
                if m in state.loaded:
                    entry["loaded_context_length"] = 4096
                data.append(entry)
            return dumps({"object": "list", "data": data}).encode()

        return await answer_whole(request, behaviour, body=body, content_type=JSON_TYPE, error=err)


def create_app(state: FakeState) -> web.Application:
    """The fake LM Studio application around ``state`` (usable in-process too)."""
    app = web.Application(middlewares=[record_requests], client_max_size=BODY_LIMIT)
    add_control_routes(app, state)
    LMStudioOpenAI().add_routes(app)
    return app


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    parser = base_arg_parser(
        "Fake LM Studio server for tests.", "qwen2.5-7b-instruct", "Hello from fake-lmstudio."
    )
    parser.add_argument(
        "--loaded",
        action="append",
        metavar="NAME",
        help="loaded model (repeatable; default: every --model; pass --loaded '' for none)",
    )
    parser.add_argument(
        "--jit", action="store_true", help="just-in-time loading: serve and list unloaded models"
    )
    args = parser.parse_args(argv)
    models = args.models or ["qwen2.5-7b-instruct"]
    loaded = None if args.loaded is None else [m for m in args.loaded if m]
    state = FakeState(
        models=models,
        loaded=loaded,
        reply=args.reply,
        reply_tokens=args.reply_tokens,
        jit=args.jit,
        load_all_by_default=True,
        max_recorded=args.max_recorded,
    )
    serve(create_app(state), args)


if __name__ == "__main__":
    main()
