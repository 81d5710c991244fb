"""HTTP plumbing shared by the native and OpenAI routes: errors, body limits, auth, readiness.

Every error is a JSON body `{"error": {"message", "type", "code"}}` (DESIGN §9):
400 bad input, 401 missing/wrong API key, 404 unknown route, 413 oversize body,
503 while starting (or overloaded), 500 for our own bugs.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    500: "internal_error",
    503: "service_unavailable",
}
OPEN_PATHS = frozenset({"/health", "/health_generate", "/ready"})  # no API key needed


class HTTPError(Exception):
    def __init__(self, status: int, message: str, code: int | str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code if code is not None else status


def error_response(status: int, message: str, code: int | str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": ERROR_TYPES.get(status, "error"),
                      "code": code if code is not None else status}}
    return JSONResponse(body, status_code=status)


async def read_json(request: Request, limit: int) -> Any:
    """The parsed JSON body; 413 past `limit` bytes (checked while reading), 400 if not JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HTTPError(400, f"the request body is not valid JSON: {exc}") from None


async def handle_http_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, HTTPError):
        return error_response(exc.status, exc.message, exc.code)
    if isinstance(exc, HTTPException):
        message = f"no route {request.url.path}" if exc.status_code == 404 else str(exc.detail)
        return error_response(exc.status_code, message)
    if isinstance(exc, ValueError):
        return error_response(400, str(exc))
    logger.exception("unhandled error on %s", request.url.path)
    return error_response(500, f"internal server error: {type(exc).__name__}: {exc}")


class GuardMiddleware:
    """503 until the model is loaded, then 401 unless the API key matches (constant time)."""

    def __init__(self, app: ASGIApp, api_key: str | None, is_ready: Callable[[], bool]) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode() if api_key else None
        self.is_ready = is_ready

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if not self.is_ready():
            resp = error_response(503, "the server is starting (loading the model) or shutting down; retry later")
            return await resp(scope, receive, send)
        if self.expected is not None and scope["path"] not in OPEN_PATHS:
            auth = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(auth, self.expected):
                resp = error_response(401, "missing or wrong API key: send 'Authorization: Bearer <key>'")
                return await resp(scope, receive, send)
        await self.app(scope, receive, send)
