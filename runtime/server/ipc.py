"""zmq PUSH/PULL plumbing between the server's three processes (docs/architecture.md §2).

Each receiver binds one PULL socket at an `ipc://` address in a private temp folder; senders
connect PUSH sockets to it (a PULL socket accepts many senders, so the scheduler and the
detokenizer both reach the tokenizer manager). One message = one pickled dataclass from
`messages.py`: pickle is fine because every endpoint is ours and the sockets are files only
this user can open.

    endpoints = IpcEndpoints.in_new_dir()
    rx = pull_socket(ctx, endpoints.scheduler)          # binds
    tx = push_socket(ctx, endpoints.scheduler)          # connects
    send(tx, AbortRequest("rid")); recv(rx, timeout_ms=100)
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass

import zmq


@dataclass(frozen=True)
class IpcEndpoints:
    folder: str
    scheduler: str  # -> scheduler: TokenizedRequest, AbortRequest, FlushCacheRequest
    detokenizer: str  # -> detokenizer: DetokenizeParams, BatchTokenOut
    tokenizer: str  # -> tokenizer manager: BatchTextOut, ProcessReady/Failed, replies

    @classmethod
    def in_new_dir(cls) -> IpcEndpoints:
        folder = tempfile.mkdtemp(prefix="radixlm-ipc-")
        os.chmod(folder, 0o700)  # only this user may connect to the sockets
        return cls(
            folder=folder,
            scheduler=f"ipc://{folder}/scheduler",
            detokenizer=f"ipc://{folder}/detokenizer",
            tokenizer=f"ipc://{folder}/tokenizer",
        )

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _configure(sock: zmq.Socket) -> zmq.Socket:
    # Unbounded queues: a send must never block or drop (the receivers drain eagerly), and
    # closing must not wait for peers that may already be gone.
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.LINGER, 0)
    return sock


def pull_socket(ctx: zmq.Context, address: str) -> zmq.Socket:
    """The receiving end; it owns (binds) the address."""
    sock = _configure(ctx.socket(zmq.PULL))
    sock.bind(address)
    return sock


def push_socket(ctx: zmq.Context, address: str) -> zmq.Socket:
    """A sending end; connects (zmq queues messages until the receiver has bound)."""
    sock = _configure(ctx.socket(zmq.PUSH))
    sock.connect(address)
    return sock


def encode(msg: object) -> bytes:
    return pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)


def send(sock: zmq.Socket, msg: object) -> None:
    sock.send(encode(msg))


def send_bytes(sock: zmq.Socket, payload: bytes) -> None:
    """Send a message `encode` made earlier (e.g. in a worker thread: zmq sockets are not
    thread-safe, pickling a long prompt holds the event loop)."""
    sock.send(payload)


def recv(sock: zmq.Socket, timeout_ms: int | None = None) -> object | None:
    """One message; None if none arrived within timeout_ms (None = wait forever)."""
    if timeout_ms is not None and not sock.poll(timeout_ms, zmq.POLLIN):
        return None
    return pickle.loads(sock.recv())


def recv_all_nowait(sock: zmq.Socket) -> list[object]:
    """Every message already queued, without waiting."""
    msgs = []
    while True:
        try:
            msgs.append(pickle.loads(sock.recv(zmq.NOBLOCK)))
        except zmq.Again:
            return msgs
