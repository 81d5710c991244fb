"""One batched prefill straight through the model runner, for the logits parity tests."""

from __future__ import annotations

import torch

from radixlm.runtime.bootstrap import build_runtime
from radixlm.runtime.model.forward_batch import ForwardBatch
from radixlm.runtime.server_args import ServerArgs


def last_position_logits(args: ServerArgs, ids: list[list[int]]) -> tuple[torch.Tensor, object]:
    """Prefill every prompt of `ids` in one forward (no cache, no scheduler policy) ->
    (float32 logits of each prompt's last position [len(ids), vocab], the scheduler)."""
    sched = build_runtime(args).scheduler
    rows = [sched.req_pool.alloc() for _ in ids]
    slots = sched.kv_pool.alloc(sum(len(x) for x in ids))
    offset, last = 0, []
    for row, x in zip(rows, ids):
        sched.req_pool.req_to_token[row, : len(x)] = slots[offset : offset + len(x)].to(torch.int32)
        offset += len(x)
        last.append(offset - 1)
    fb = ForwardBatch.build(
        input_ids=[t for x in ids for t in x], req_pool_indices=rows, prefix_lens=[0] * len(ids),
        extend_lens=[len(x) for x in ids], out_cache_loc=slots, logits_indices=last,
        req_to_token=sched.req_pool.req_to_token, k_buffers=sched.kv_pool.k_buffers,
        v_buffers=sched.kv_pool.v_buffers,
    )
    return sched.runner.forward(fb), sched
