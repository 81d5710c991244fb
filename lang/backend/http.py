"""Minimal HTTP for RuntimeEndpoint: urllib only, so the frontend needs no extra packages.

Mirrors SGLang's frontend transport (docs/wire-protocol.md B.1): JSON content type on every call,
a bearer token when an api key is set, no connection reuse, non-200 answers returned (not
raised) to the caller; SSE streams read line by line.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any, NamedTuple


class HttpResponse(NamedTuple):
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def error_text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def _request(url: str, payload: Any, method: str | None, api_key: str | None) -> urllib.request.Request:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    data = json.dumps(payload).encode("utf-8") if payload is not None else None
    method = method or ("POST" if data is not None else "GET")
    return urllib.request.Request(url, data=data, headers=headers, method=method)


def _ssl_context(verify: Any) -> ssl.SSLContext | None:
    if verify is False:
        return ssl._create_unverified_context()
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return None


def http_request(url: str, json_body: Any = None, method: str | None = None,
                 api_key: str | None = None, verify: Any = None,
                 timeout: float | None = None) -> HttpResponse:
    """One request; returns (status, body) for any HTTP status, raises only on network errors."""
    req = _request(url, json_body, method, api_key)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=_ssl_context(verify)) as resp:
            return HttpResponse(resp.status, resp.read())
    except urllib.error.HTTPError as exc:
        return HttpResponse(exc.code, exc.read())


def sse_events(url: str, json_body: Any, api_key: str | None = None, verify: Any = None,
               timeout: float | None = None) -> Iterator[dict]:
    """POST `json_body` and yield each `data:` event's JSON until `data: [DONE]`.

    Raises RuntimeError on a non-200 status and on an in-stream `{"error": ...}` event.
    """
    req = _request(url, json_body, "POST", api_key)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout, context=_ssl_context(verify))
    except urllib.error.HTTPError as exc:
        raise RuntimeError(exc.read().decode("utf-8", errors="replace")) from None
    with resp:
        for raw in resp:
            line = raw.decode("utf-8").rstrip("\r\n")
            if not line.startswith("data:"):
                continue
            if line == "data: [DONE]":
                return
            event = json.loads(line[5:])
            if isinstance(event, dict) and "error" in event:
                raise RuntimeError(json.dumps(event["error"]))
            yield event
