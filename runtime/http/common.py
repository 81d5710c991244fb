"""HTTP plumbing shared by the native and OpenAI routes: errors, body limits, auth, readiness,
the replica header.

Every error is a `RequestError` (runtime/errors.py) rendered as the JSON body
`{"error": {"message", "type", "code"}}`: 400 bad input, 401 missing/wrong API key, 404
unknown route, 413 oversize body, 503 while starting or overloaded (with a `Retry-After`
header), 500 for our own bugs. A `ValueError` raised while parsing a request is a 400.

No request field reaches the filesystem: the server never opens a path a client names.
Fields that SGLang, vLLM or Hugging Face would read as a file, URL, adapter or code to load
(`FILE_FIELDS`) are refused with 400 in every JSON body, instead of being silently ignored
like other unknown top-level keys (SGLang's contract); null values stay accepted because
SGLang clients send e.g. `"lora_path": null`.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from radixlm.runtime.errors import RequestError
from radixlm.runtime.http.json_body import parse_json_body

logger = logging.getLogger(__name__)

# No API key needed: liveness/readiness probes (Kubernetes, load balancers) carry no secret,
# and these two cost nothing. /health_generate needs the key when one is set: it runs a real
# generation, so an open one would let anyone load the model (`Runtime` sends the key).
OPEN_PATHS = frozenset({"/health", "/ready"})
Run = Callable[..., Awaitable[Any]]  # TokenizerPool.run: (heavy, fn, *args) -> fn(*args)
# Bodies up to this size are decoded on the event loop (json.loads of 64 KiB: ~0.3 ms, less
# than a hand-off to the worker thread); larger ones in the tokenizer pool's worker.
INLINE_JSON_BYTES = 64 * 1024
# On every response (uvicorn's default headers, launch.py): which server answered, behind a router.
REPLICA_HEADER = "X-Radixlm-Replica"
RETRY_AFTER_S = 1  # the hint sent with every 503: queues drain within seconds
FILE_FIELDS = frozenset({
    "model_path", "tokenizer", "tokenizer_path", "chat_template", "lora_path",
    "image_data", "video_data", "audio_data", "custom_logit_processor",
})


def error_response(error: RequestError) -> JSONResponse:
    # A 503 is temporary (starting, overloaded, shutting down): tell clients when to retry.
    headers = {"Retry-After": str(RETRY_AFTER_S)} if error.retryable else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body; 413 past `limit` bytes (checked while reading)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError.of(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError.of(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int, run: Run, then: Callable[[Any], Any] | None = None,
                    inline_bytes: int = INLINE_JSON_BYTES) -> Any:
    """The parsed body, passed through `then` (the route's own parser) if given. Both run in
    the tokenizer pool's worker (`run`: TokenizerPool.run) when the body is over
    `inline_bytes`, so a 15 MB body never holds the event loop."""
    raw = await read_body(request, limit)
    heavy = len(raw) > inline_bytes
    return await run(heavy, _decode_then, raw, request.headers.get("content-type"), heavy, then)


def _decode_then(raw: bytes, content_type: str | None, preemptible: bool,
                 then: Callable[[Any], Any] | None) -> Any:
    body = decode_body(raw, content_type, preemptible)
    return body if then is None else then(body)


def decode_body(raw: bytes, content_type: str | None, preemptible: bool = False) -> Any:
    """The parsed JSON body (None if empty); 400 if not JSON or naming a file to load, 415 if
    not declared JSON. `preemptible`: see json_body.decode_json (for a worker thread)."""
    if not raw.strip():
        return None
    body = parse_json_body(raw, content_type, preemptible)
    reject_file_fields(body)
    return body


def reject_file_fields(body: Any) -> None:
    """400 if a top-level field names a file, URL or code for the server to load."""
    if not isinstance(body, dict):
        return
    named = sorted(k for k in FILE_FIELDS.intersection(body) if body[k] is not None)
    if named:
        raise RequestError.invalid(
            f"unsupported field(s) {', '.join(named)}: this server loads its model, tokenizer and "
            "chat template at start-up and never opens files, URLs or code named in a request")


async def handle_http_error(request: Request, exc: Exception) -> JSONResponse:
    response = error_response(as_request_error(request, exc))
    if isinstance(exc, HTTPException) and exc.status_code == 405:  # keep Allow
        response.headers["Allow"] = (exc.headers or {}).get("Allow", "")
    return response


def as_request_error(request: Request, exc: Exception) -> RequestError:
    if isinstance(exc, RequestError):
        return exc
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        return RequestError.of(405, f"method {request.method} is not allowed on {request.url.path}; use {allow}")
    if isinstance(exc, HTTPException):
        message = f"no route {request.url.path}" if exc.status_code == 404 else str(exc.detail)
        return RequestError.of(exc.status_code, message)
    if isinstance(exc, ValueError):
        return RequestError.invalid(str(exc))
    logger.exception("unhandled error on %s", request.url.path)
    return RequestError.internal(f"internal server error: {type(exc).__name__}: {exc}")


class GuardMiddleware:
    """503 until the model is loaded, then 401 unless the API key matches (constant time).
    `open_paths` need no key: the health checks and the web view's page files
    (web_view.PAGE_PATHS), which hold no data; the page sends the key on its data routes."""

    def __init__(self, app: ASGIApp, api_key: str | None, is_ready: Callable[[], bool],
                 open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode() if api_key else None
        self.is_ready = is_ready
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if not self.is_ready():
            resp = error_response(RequestError.unavailable(
                "the server is starting (loading the model) or shutting down; retry later"))
            return await resp(scope, receive, send)
        if self.expected is not None and scope["path"] not in self.open_paths:
            auth = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(auth, self.expected):
                resp = error_response(RequestError.of(
                    401, "missing or wrong API key: send 'Authorization: Bearer <key>'"))
                return await resp(scope, receive, send)
        await self.app(scope, receive, send)


def replica_label(replica_name: str | None, host: str, port: int) -> str:
    """How a server names itself in REPLICA_HEADER: --replica-name, else host:port."""
    return replica_name or f"{host}:{port}"

