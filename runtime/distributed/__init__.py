"""Tensor parallelism (`--tp N`) over torch.distributed (docs/architecture.md §4).

One model is split over N ranks, each a process with its own device (or its share of the
CPU cores). Who owns what:

- **rank 0** is the scheduler's process (the server's scheduler process, or the process of an
  in-process `Engine`): it alone holds the radix cache, the request pools, grammars and the
  sampler. Its `ModelRunner.forward` broadcasts each `ForwardBatch` (`batch_sync.py`) before
  running its own shard of the forward, and only it receives logits.
- **ranks 1..N-1** (`worker.py`) hold a model shard and a KV pool of the same slot count, and
  run every forward rank 0 broadcasts; they decide nothing. Because their pool has the same
  slots, rank 0's slot allocation is valid on every rank.
- **the shards** (`sharding.py`): query heads, KV heads (replicated when there are fewer KV
  heads than ranks), the MLP width and the vocabulary are split by rank; norms are
  replicated. Layers: `model/layers/parallel_linear.py`, `model/layers/vocab_parallel.py`.
- **the group** (`group.py`): gloo for control on every device, NCCL (CUDA) or gloo (CPU)
  for the model's all-reduces; a collective that fails raises `TensorParallelError`.
- **processes** (`ranks.py`): the ranks are spawned by the server's launcher (siblings of the
  scheduler, so its child watchdog sees a dead rank) or by the `Engine`.

With tp == 1 nothing here is imported or called: the single-device path is unchanged.
"""
