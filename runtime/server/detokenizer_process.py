"""The detokenizer process: token ids -> visible text, one `RequestDetokenizer` per request.

In:  DetokenizeParams (registers a request), BatchTokenOut   (from the scheduler, in order)
Out: BatchTextOut with each output's cumulative visible text  (to the tokenizer manager)

Cumulative text (not deltas) keeps the main process simple and makes a lost message
harmless; the text never shrinks because stop-string prefixes are held back until decided.
"""

from __future__ import annotations

import logging

import zmq

from radixlm.runtime.output.detokenizer import RequestDetokenizer
from radixlm.runtime.server import ipc
from radixlm.runtime.server.child_process import exit_now, parent_is_gone, setup_child
from radixlm.runtime.server.messages import (
    BatchTextOut,
    BatchTokenOut,
    DetokenizeParams,
    ProcessFailed,
    ProcessReady,
    ReqTextOutput,
)

logger = logging.getLogger(__name__)

IDLE_POLL_MS = 500


class DetokenizerManager:
    """The per-request detokenizers of every unfinished request (owned by this process)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.requests: dict[str, RequestDetokenizer] = {}

    def register(self, p: DetokenizeParams) -> None:
        self.requests[p.rid] = RequestDetokenizer.for_params(self.tokenizer, p.params)

    def process(self, batch: BatchTokenOut) -> BatchTextOut:
        texts = []
        for out in batch.outputs:
            detok = self.requests.get(out.rid)
            if detok is None:  # never registered (should not happen): decode with defaults
                detok = self.requests[out.rid] = RequestDetokenizer(self.tokenizer)
            detok.update(out.new_token_ids, out.finished, out.matched_stop)
            texts.append(ReqTextOutput(out, detok.visible_text(out.finished)))
            if out.finished:
                del self.requests[out.rid]
        return BatchTextOut(texts)


def run_detokenizer_process(model_folder: str, endpoints: ipc.IpcEndpoints, parent_pid: int,
                            log_level: str) -> None:
    """Entry point of the spawned detokenizer process."""
    setup_child(log_level)
    ctx = zmq.Context()
    to_main = ipc.push_socket(ctx, endpoints.tokenizer)
    try:
        import torch

        torch.set_num_threads(1)  # leave the cores to the scheduler (docs/architecture.md §2)
        from radixlm.runtime.model.tokenizer import load_tokenizer

        manager = DetokenizerManager(load_tokenizer(model_folder))
    except Exception as exc:
        logger.exception("detokenizer start-up failed")
        ipc.send(to_main, ProcessFailed("detokenizer", f"{type(exc).__name__}: {exc}"))
        to_main.close(linger=2000)  # deliver the reason before exiting
        exit_now(1)
    inbox = ipc.pull_socket(ctx, endpoints.detokenizer)
    ipc.send(to_main, ProcessReady("detokenizer"))
    while True:
        msg = ipc.recv(inbox, timeout_ms=IDLE_POLL_MS)
        if msg is None:
            if parent_is_gone(parent_pid):
                logger.warning("the server process is gone; detokenizer exiting")
                exit_now(0)
            continue
        if isinstance(msg, DetokenizeParams):
            manager.register(msg)
        elif isinstance(msg, BatchTokenOut):
            ipc.send(to_main, manager.process(msg))
        else:
            logger.error("detokenizer got an unknown message %r", type(msg).__name__)
