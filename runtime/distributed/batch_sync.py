"""Rank 0's ForwardBatch, broadcast to the other tensor-parallel ranks (control group).

    send_batch(tp, fb)                       # rank 0, in ModelRunner.forward
    fb = receive_batch(tp, k_buffers, v_buffers, device)   # ranks 1..N-1; None: stop
    send_stop(tp)                            # rank 0, at shutdown

Two broadcasts per forward: a fixed header (command, mode, sizes, the scalar hints) and one
int32 payload with every index tensor, ending with the batch's rows of `req_to_token` up to
`max_seq_len`. The other ranks hold no request table: they attend through this compact
[batch, max_seq_len] copy with rows 0..batch-1, so rank 0's radix-cache matches, retractions
and draft drops (which write its table outside any batch) never need mirroring. Every value
fits in int32 (token ids, positions, KV slots).

The KV buffers are each rank's own (its heads, the same slot count), so rank 0's
`out_cache_loc` writes the same slots everywhere.
"""

from __future__ import annotations

import enum

import torch

from radixlm.runtime.model.forward_batch import ForwardBatch, ForwardMode

_MODES = (ForwardMode.EXTEND, ForwardMode.DECODE)


class Command(enum.IntEnum):
    FORWARD = 1
    STOP = 2


# command, mode, batch, tokens, logit rows, max_seq_len, max_extend_len, shared_prefix_len
HEADER_LEN = 8


def send_batch(tp, fb: ForwardBatch) -> None:
    header = [Command.FORWARD, _MODES.index(fb.mode), fb.batch_size, fb.input_ids.shape[0],
              fb.logits_indices.shape[0], fb.max_seq_len, fb.max_extend_len, fb.shared_prefix_len]
    tables = fb.req_to_token[fb.req_pool_indices, : fb.max_seq_len]  # [batch, max_seq_len] int32
    payload = torch.cat([
        t.to(torch.int32) for t in (fb.input_ids, fb.positions, fb.out_cache_loc, fb.prefix_lens, fb.extend_lens,
                                    fb.seq_lens, fb.extend_start_loc, fb.logits_indices)
    ] + [tables.reshape(-1)])
    tp.broadcast(torch.tensor(header, dtype=torch.int64))
    tp.broadcast(payload.cpu())


def send_stop(tp) -> None:
    tp.broadcast(torch.tensor([Command.STOP] + [0] * (HEADER_LEN - 1), dtype=torch.int64))


def receive_batch(tp, k_buffers: list[torch.Tensor], v_buffers: list[torch.Tensor],
                  device: torch.device) -> ForwardBatch | None:
    """The next batch rank 0 sends, over this rank's KV buffers; None when told to stop."""
    header = tp.broadcast(torch.zeros(HEADER_LEN, dtype=torch.int64)).tolist()
    command, mode, batch, tokens, logit_rows, max_seq_len, max_extend_len, shared = header
    if command == Command.STOP:
        return None
    sizes = [tokens] * 3 + [batch] * 4 + [logit_rows, batch * max_seq_len]
    payload = tp.broadcast(torch.empty(sum(sizes), dtype=torch.int32)).to(device)
    ids, positions, loc, prefix, extend, seq, starts, logits, tables = payload.split(sizes)
    return ForwardBatch(
        mode=_MODES[mode], batch_size=batch, input_ids=ids.long(), positions=positions.long(),
        req_pool_indices=torch.arange(batch, device=device), prefix_lens=prefix.long(),
        extend_lens=extend.long(), seq_lens=seq.long(), extend_start_loc=starts.long(),
        out_cache_loc=loc.long(), logits_indices=logits.long(), max_seq_len=max_seq_len,
        max_extend_len=max_extend_len, shared_prefix_len=shared,
        req_to_token=tables.view(batch, max_seq_len), k_buffers=k_buffers, v_buffers=v_buffers,
    )
