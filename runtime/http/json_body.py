"""Strict JSON request bodies: what `json.loads` lets through but a server must refuse.

    body = parse_json_body(raw, request.headers.get("content-type"))
    # RequestError: 415 unless declared JSON, 400 naming the problem otherwise

Python's json module accepts the non-JSON literals NaN / Infinity, turns 1e309 into inf,
recurses once per nesting level (a 100k-deep array is a RecursionError: a 500), and decodes
a "\\ud800" escape into a lone surrogate that no tokenizer can encode (another 500). Each is
a 400 here, with a message that says what to send instead.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from radixlm.runtime.errors import RequestError

# Deeper than any real request (a JSON schema nests a few levels per property), shallow
# enough that later recursive code (json.dumps of a schema, pickle to the scheduler) is safe.
MAX_DEPTH = 100
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def parse_json_body(raw: bytes, content_type: str | None, preemptible: bool = False) -> Any:
    """The parsed non-empty body, checked as described above."""
    check_content_type(content_type)
    return decode_json(raw, preemptible)


def check_content_type(value: str | None) -> None:
    """A 415 unless the body is declared JSON; none at all is read as JSON (as FastAPI does)."""
    if value is None:
        return
    mime = value.split(";", 1)[0].strip().lower()
    if mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json")):
        return
    raise RequestError.of(415, f"unsupported Content-Type {value!r}: send the body as JSON with "
                         "'Content-Type: application/json'")


def decode_json(raw: bytes, preemptible: bool = False) -> Any:
    """The parsed body; a 400 for anything that is not plain, finite, shallow JSON.
    `preemptible` (for a large body in a worker thread): integers are parsed by a Python hook,
    so the C decoder gives up the GIL between them; 5M ids then take 0.7 s instead of 0.3 s,
    but never hold the event loop's thread for more than a few ms (measured)."""
    hooks = {"parse_int": _int} if preemptible else {}
    try:
        body = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float, **hooks)
    except RecursionError:
        raise _too_deep() from None
    except RequestError:  # from the parse hooks below: already says what is wrong
        raise
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a 5000-digit integer
        raise RequestError.invalid(f"the request body is not valid JSON: {exc}") from None
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:  # cheap bound first: most bodies stop here
        _check_depth(body)
    if _SURROGATE_ESCAPE.search(raw):
        _check_strings(body)
    return body


def _reject_constant(name: str) -> float:
    raise RequestError.invalid(f"the request body is not valid JSON: {name} is not a JSON number; "
                         "send a finite number")


def _int(text: str) -> int:
    return int(text)  # a Python frame: the interpreter may switch threads here


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise RequestError.invalid(f"the number {text[:40]} is out of range: send a finite number "
                             "(at most about 1.8e308)")
    return value


def _too_deep() -> RequestError:
    return RequestError.invalid(f"the request body nests arrays/objects more than {MAX_DEPTH} levels deep")


def _children(node: Any) -> list:
    values = node.values() if isinstance(node, dict) else node
    return [v for v in values if isinstance(v, (dict, list))]


def _check_depth(body: Any) -> None:
    """Level by level, without recursion: a bomb is refused after MAX_DEPTH levels."""
    level, depth = ([body] if isinstance(body, (dict, list)) else []), 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            raise _too_deep()
        level = [c for node in level for c in _children(node)]


def _check_strings(body: Any) -> None:
    """400 for a string (or key) holding a lone UTF-16 surrogate, which is not Unicode text."""
    stack = [body]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                raise RequestError.invalid(f"the string {node[:40]!r} holds an unpaired UTF-16 surrogate escape "
                                     "(\\ud800-\\udfff): send valid Unicode text") from None
        elif isinstance(node, dict):
            stack.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
