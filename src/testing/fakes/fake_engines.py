"""Fake local engines for the discovery tests: real HTTP processes that answer the way
llama.cpp's server, vLLM, SGLang, KoboldCpp, LocalAI, text-generation-webui, Jan and GPT4All
answer, each with an OpenAI-compatible chat API behind it.

Run from the repository root::

    python -m src.testing.fakes.fake_engines --flavour llamacpp --port 0
        [--model NAME ...] [--reply TEXT | --reply-tokens N] [--api-key KEY]

It prints ``READY <port>`` once listening. Every flavour serves ``/v1/models``,
``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings`` and the ``/_control`` plane
(the fake LM Studio's OpenAI routes: one loaded model answers whatever model is asked for,
as these single-model servers do), plus what tells it apart (the signatures DEMI reads,
``src/llm/discovery/engines.py``):

============  ======================================================================
flavour       what it adds
============  ======================================================================
llamacpp      ``Server: llama.cpp``; ``GET /props`` (``default_generation_settings``,
              ``total_slots``, ``model_path``); ``GET /health``; ``owned_by: llamacpp``
vllm          ``owned_by: vllm``; ``GET /version``; ``GET /health``
sglang        ``owned_by: sglang``; ``GET /get_model_info``
koboldcpp     ``GET /api/extra/version`` → ``{"result": "KoboldCpp"}``; ``/api/v1/model``
localai       ``GET /readyz``
textgen       ``GET /v1/internal/model/info`` → ``{"model_name": ...}``
jan           every route but ``/_control`` wants ``Authorization: Bearer <--api-key>``
gpt4all       nothing more
============  ======================================================================
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .control import BODY_LIMIT, STATE, FakeState, add_control_routes, record_requests
from .engine import base_arg_parser, serve
from .fake_lmstudio import LMStudioOpenAI
from .openai_api import OpenAIRoutes

FLAVOURS = ("llamacpp", "vllm", "sglang", "koboldcpp", "localai", "textgen", "jan", "gpt4all")
OWNER = {"llamacpp": "llamacpp", "vllm": "vllm", "sglang": "sglang", "koboldcpp": "koboldcpp",
         "localai": "localai", "textgen": "system", "jan": "jan", "gpt4all": "gpt4all"}
"""``owned_by`` in ``/v1/models`` (llama.cpp, vLLM and SGLang name themselves there)."""


class EngineOpenAI(LMStudioOpenAI):
    """The OpenAI routes of one flavour (LM Studio's model resolution, no LM Studio extras)."""

    def __init__(self, flavour: str) -> None:
        self.flavour = flavour

    def model_list(self, state: FakeState) -> dict[str, Any]:
        return {"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": OWNER[self.flavour]}
            for m in state.loaded]}

    def add_routes(self, app: web.Application) -> None:
        OpenAIRoutes.add_routes(self, app)  # not LM Studio's native /api/v0 routes
        extra = SIGNATURES.get(self.flavour, {})
        for path, handler in extra.items():
            app.router.add_get(path, handler)


def _model(request: web.Request) -> str:
    state: FakeState = request.app[STATE]
    return state.loaded[0] if state.loaded else ""


async def _props(request: web.Request) -> web.Response:
    return web.json_response({
        "default_generation_settings": {"n_ctx": 4096, "temperature": 0.8},
        "total_slots": 1, "model_path": f"/models/{_model(request)}.gguf",
        "model_alias": _model(request), "build_info": "b1-fake"})


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _vllm_version(request: web.Request) -> web.Response:
    return web.json_response({"version": "0.0.0-fake"})


async def _sglang_info(request: web.Request) -> web.Response:
    return web.json_response({"model_path": _model(request), "is_generation": True})


async def _kobold_version(request: web.Request) -> web.Response:
    return web.json_response({"result": "KoboldCpp", "version": "0.0.0-fake"})


async def _kobold_model(request: web.Request) -> web.Response:
    return web.json_response({"result": f"koboldcpp/{_model(request)}"})


async def _textgen_info(request: web.Request) -> web.Response:
    return web.json_response({"model_name": _model(request), "lora_names": []})


SIGNATURES: dict[str, dict[str, Any]] = {
    "llamacpp": {"/props": _props, "/health": _ok},
    "vllm": {"/version": _vllm_version, "/health": _ok},
    "sglang": {"/get_model_info": _sglang_info},
    "koboldcpp": {"/api/extra/version": _kobold_version, "/api/v1/model": _kobold_model},
    "localai": {"/readyz": _ok},
    "textgen": {"/v1/internal/model/info": _textgen_info},
}


def create_app(state: FakeState, flavour: str, api_key: str | None = None) -> web.Application:
    """The fake ``flavour`` engine around ``state`` (usable in-process too)."""

    @web.middleware
    async def key_required(request: web.Request, handler: Any) -> web.StreamResponse:
        if (api_key is not None and not request.path.startswith("/_control")
                and request.headers.get("Authorization") != f"Bearer {api_key}"):
            return web.json_response({"error": {"message": "Invalid API key",
                                                "type": "invalid_request_error"}}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    app = web.Application(middlewares=[record_requests, key_required],
                          client_max_size=BODY_LIMIT)
    if flavour == "llamacpp":
        async def server_header(_request: web.Request, response: web.StreamResponse) -> None:
            response.headers["Server"] = "llama.cpp"
        app.on_response_prepare.append(server_header)
    add_control_routes(app, state)
    EngineOpenAI(flavour).add_routes(app)
    return app


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    parser = base_arg_parser("Fake local engine for tests.", "local-model",
                             "Hello from fake-engine.")
    parser.add_argument("--flavour", choices=FLAVOURS, required=True)
    parser.add_argument("--api-key", default=None, help="answer 401 without this bearer key")
    args = parser.parse_args(argv)
    if args.reply == "Hello from fake-engine.":
        args.reply = f"Hello from fake-{args.flavour}."
    state = FakeState(
        models=args.models or [f"{args.flavour}-model"],
        loaded=None,
        reply=args.reply,
        reply_tokens=args.reply_tokens,
        jit=False,
        load_all_by_default=True,
        max_recorded=args.max_recorded,
    )
    serve(create_app(state, args.flavour, args.api_key), args)


if __name__ == "__main__":
    main()
