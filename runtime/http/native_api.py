"""The HTTP app: SGLang-native routes (docs/wire-protocol.md Part B) plus the OpenAI and metrics
routes from `openai_api.py` and the web view's from `web_view.py`, behind the guard middleware
(503 while starting, API key).

    app = build_app(tm, args)          # tm: a TokenizerManager; served by launch.py on uvicorn

Handlers parse and validate (ValueError -> 400), submit to the TokenizerManager, then either
wait for the results or stream SSE events; they never block the event loop on the model,
nor on a large body (parsing and tokenizing it run in the tokenizer pool's worker), and
scheduler facts come from the latest snapshot it pushed (/metrics, /server_info).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from radixlm.runtime.errors import RequestError
from radixlm.runtime.http.common import (
    INLINE_JSON_BYTES,
    OPEN_PATHS,
    GuardMiddleware,
    handle_http_error,
    read_json,
)
from radixlm.runtime.http.generate_input import RequestSpec, parse_generate
from radixlm.runtime.http.metrics import CONTENT_TYPE
from radixlm.runtime.http.model_info import frontend_model_path, served_model_name
from radixlm.runtime.http.openai_api import openai_routes
from radixlm.runtime.http.openapi_spec import build_openapi
from radixlm.runtime.http.request_lifecycle import collect, raise_first_error, stream_response
from radixlm.runtime.http.web_view import PAGE_PATHS, web_view_routes
from radixlm.runtime.sampling.sampling_params import SamplingParams
from radixlm.runtime.server.tokenizer_manager import TokenizerManager
from radixlm.runtime.server.tokenizer_pool import INLINE_CHARS
from radixlm.runtime.server_args import ServerArgs

VERSION = "0.1.0"
HEALTH_GENERATE_TIMEOUT = 30.0


class NativeRenderer:
    """SSE events as SGLang's frontend reads them (B.6): the event itself, `index` in a batch."""

    def __init__(self, is_batch: bool, replica: str | None) -> None:
        self.is_batch = is_batch
        self.replica = replica

    def event(self, index: int, event: dict) -> list[dict]:
        event = with_replica(event, self.replica)
        return [{**event, "index": index} if self.is_batch else event]

    def tail(self) -> list[dict]:
        return []


def with_replica(result: dict, replica: str | None) -> dict:
    """`meta_info["replica"]` names the replica that served a /generate result (--replica-name)."""
    return result if replica is None else {**result, "meta_info": {**result["meta_info"], "replica": replica}}


class NativeApi:
    def __init__(self, tm: TokenizerManager, args: ServerArgs) -> None:
        self.tm = tm
        self.args = args
        self.started = time.time()
        self.openapi_spec = build_openapi(VERSION, api_key=bool(args.api_key), max_body_size=args.max_body_size)

    async def body(self, request: Request, then: Callable[[Any], Any] | None = None,
                   inline_bytes: int = INLINE_JSON_BYTES) -> Any:
        return await read_json(request, self.args.max_body_size, self.tm.pool.run, then, inline_bytes)

    async def generate(self, request: Request) -> Response:
        batch = await self.body(request, parse_generate)
        if batch.stream:
            return await stream_response(request, self.tm, batch.specs,
                                         lambda _: NativeRenderer(batch.is_batch, self.args.replica_name))
        states = await collect(request, self.tm, batch.specs)
        if states is None:
            return Response(status_code=499)  # nobody is listening any more
        results = [with_replica(s.builder.result(), self.args.replica_name) for s in states]
        return JSONResponse(results if batch.is_batch else results[0])

    async def model_info(self, request: Request) -> Response:
        info = self.tm.scheduler_info
        return JSONResponse({
            "model_path": frontend_model_path(self.args, self.tm.tokenizer),
            "served_model_name": served_model_name(self.args),
            "tokenizer_path": str(self.tm.model_folder),
            "is_generation": True,
            "preferred_sampling_params": None,
            "weight_version": "default",
            "load_format": "auto",
            "reasoning_parser": None,
            **self.tm.tool_setup.metadata(),
            "disaggregation_mode": "null",
            "has_image_understanding": False,
            "has_audio_understanding": False,
            "model_type": info.get("model_type"),
            "architectures": [info.get("architecture")],
            "context_length": info.get("context_len"),
        })

    async def server_info(self, request: Request) -> Response:
        args = dataclasses.asdict(self.args)
        if args.get("api_key"):
            args["api_key"] = "<redacted>"
        # The latest snapshot the scheduler pushed: it never waits for a step in progress.
        state = self.tm.scheduler_state
        internal = [] if state is None else [{**dataclasses.asdict(state),
                                              "snapshot_age_s": round(time.time() - state.taken_at, 3)}]
        return JSONResponse({
            **args,
            **{k: v for k, v in self.tm.scheduler_info.items() if k != "pid"},
            "max_total_num_tokens": self.tm.scheduler_info.get("kv_pool_size"),
            "internal_states": internal,
            "version": VERSION,
            "startup_time": self.started,
            "frontend": "python",
        })

    async def flush_cache(self, request: Request) -> Response:
        if await self.tm.flush_cache():
            return PlainTextResponse("Cache flushed.\n")
        raise RequestError.invalid("Cache not flushed: requests are running or waiting; retry when the server is idle.")

    async def health(self, request: Request) -> Response:
        return Response(status_code=200)

    async def health_generate(self, request: Request) -> Response:
        spec = RequestSpec(rid=f"health-{time.monotonic_ns()}", text="hi",
                           params=SamplingParams.from_dict({"max_new_tokens": 1, "temperature": 0}))
        states = await self.tm.submit_all([spec])
        try:
            await asyncio.wait_for(states[0].done.wait(), HEALTH_GENERATE_TIMEOUT)
        except TimeoutError:
            self.tm.abort_unfinished(states, "health check timed out")
            raise RequestError.unavailable("health generation timed out") from None
        raise_first_error(states)
        return Response(status_code=200)

    async def abort_request(self, request: Request) -> Response:
        body = await self.body(request) or {}
        if not isinstance(body, dict):
            raise ValueError("the body must be an object like {\"rid\": ...} or {\"abort_all\": true}")
        abort_all, rid = body.get("abort_all"), body.get("rid")
        if abort_all is not None and not isinstance(abort_all, bool):
            raise ValueError(f"abort_all must be a boolean (got {abort_all!r})")
        if not (isinstance(rid, str) or (rid is None and abort_all)):
            raise ValueError(f"rid must be a string (or pass abort_all: true) (got {rid!r})")
        rids = list(self.tm.states) if abort_all else [rid]
        aborted = [r for r in rids if r in self.tm.states]
        for r in aborted:
            self.tm.abort(r, "aborted by /abort_request")
        if not abort_all and not aborted:  # a typo or a finished request: say so (B.9)
            raise RequestError.of(404, f"no request with rid {rid!r} is in flight (it finished, or never existed)")
        return JSONResponse({"aborted": aborted, "not_found": sorted(set(rids) - set(aborted))})

    async def concate_and_append(self, request: Request) -> Response:
        # The frontend's src/dst ids are never sent as rids (wire-protocol B.2): a no-op is correct.
        await self.body(request)
        return JSONResponse({"success": True})

    async def encode(self, request: Request) -> Response:
        # Tokenizing (and rendering the ids of) a long text runs in the pool's worker.
        payload = await self.body(request, self._encoded, inline_bytes=INLINE_CHARS)
        return Response(payload, media_type="application/json")

    def _encoded(self, body: Any) -> bytes:
        """The /encode answer as JSON bytes, as JSONResponse would render it. A text longer than
        any prompt could be is refused (TokenizerPool.check_text_length)."""
        text = body.get("text") if isinstance(body, dict) else None
        if isinstance(text, str):
            ids: list = self.tm.pool.token_ids(text)
        elif isinstance(text, list) and all(isinstance(t, str) for t in text):
            ids = [self.tm.pool.token_ids(t) for t in text]
        else:
            raise ValueError("text must be a string or a list of strings")
        return json.dumps({"input_ids": ids}, separators=(",", ":")).encode()

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(self.openapi_spec)

    async def metrics(self, request: Request) -> Response:
        # The scheduler gauges are those of its latest pushed snapshot (never a wait on a step).
        return Response(self.tm.metrics.render(), media_type=CONTENT_TYPE)

    def routes(self) -> list[Route]:
        return [
            Route("/generate", self.generate, methods=["POST"]),
            Route("/model_info", self.model_info, methods=["GET"]),
            Route("/get_model_info", self.model_info, methods=["GET"]),
            Route("/server_info", self.server_info, methods=["GET"]),
            Route("/get_server_info", self.server_info, methods=["GET"]),
            Route("/flush_cache", self.flush_cache, methods=["GET", "POST"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/ready", self.health, methods=["GET"]),
            Route("/health_generate", self.health_generate, methods=["GET"]),
            Route("/abort_request", self.abort_request, methods=["POST"]),
            Route("/concate_and_append_request", self.concate_and_append, methods=["POST"]),
            Route("/encode", self.encode, methods=["POST"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/openapi.json", self.openapi, methods=["GET"]),
        ]


def build_app(tm: TokenizerManager, args: ServerArgs) -> Starlette:
    routes = NativeApi(tm, args).routes() + openai_routes(tm, args) + web_view_routes(tm, args)
    return Starlette(
        routes=routes,
        middleware=[Middleware(GuardMiddleware, api_key=args.api_key, is_ready=lambda: tm.is_ready,
                               open_paths=OPEN_PATHS | PAGE_PATHS)],
        exception_handlers={
            RequestError: handle_http_error,
            HTTPException: handle_http_error,
            ValueError: handle_http_error,
            Exception: handle_http_error,
        },
    )
