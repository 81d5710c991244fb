"""RequestError: why a request failed, as its client sees it (HTTP status, type, message).

One type from where a failure is found to where it is shown. The scheduler puts it in the
request's abort `FinishReason`, which crosses the zmq IPC inside `ReqTokenOutput`; the
TokenizerManager fails requests with it when a child process dies; HTTP handlers raise it
and `common.handle_http_error` renders `body()`; the Engine raises it to its caller.

    raise RequestError.of(400, "max_new_tokens must be >= 0 (got -3)")

`of` picks a subclass that is also the matching Python exception, so Engine callers can keep
catching what they expect: 4xx errors are `ValueError`s (the client's input), 5xx errors are
`RuntimeError`s (ours, or capacity).
"""

from __future__ import annotations

from typing import Any

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    500: "internal_error",
    503: "service_unavailable",
}


class RequestError(Exception):
    """A failed request: `status` (HTTP), `message` (says what to fix), `code` (OpenAI's
    `error.code`, the status unless a route names it, e.g. "model_not_found")."""

    def __init__(self, status: int, message: str, code: int | str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code if code is not None else status

    @staticmethod
    def of(status: int, message: str, code: int | str | None = None) -> RequestError:
        cls = InvalidRequestError if status < 500 else ServerError
        return cls(status, message, code)

    @classmethod
    def invalid(cls, message: str) -> RequestError:
        """400: the client can fix it."""
        return cls.of(400, message)

    @classmethod
    def internal(cls, message: str) -> RequestError:
        """500: a bug or a fault on our side."""
        return cls.of(500, message)

    @classmethod
    def unavailable(cls, message: str) -> RequestError:
        """503: transient capacity or shutdown; the client should retry later."""
        return cls.of(503, message)

    @property
    def type(self) -> str:
        return ERROR_TYPES.get(self.status, "error")

    @property
    def retryable(self) -> bool:
        return self.status == 503

    def body(self) -> dict[str, Any]:
        """`{"error": {...}}`: an error response's body, and the SSE event of a failed stream."""
        return {"error": {"message": self.message, "type": self.type, "code": self.code}}

    def __reduce__(self):  # pickled across processes with its fields, not Exception.args
        return RequestError.of, (self.status, self.message, self.code)

    def __repr__(self) -> str:
        return f"RequestError({self.status}, {self.message!r})"


class InvalidRequestError(RequestError, ValueError):
    """A 4xx RequestError."""


class ServerError(RequestError, RuntimeError):
    """A 5xx RequestError."""
