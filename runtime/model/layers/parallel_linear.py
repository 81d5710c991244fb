"""The row-parallel linear layer of tensor parallelism (runtime/distributed/).

Column-parallel layers need no class of their own: qkv_proj and gate_up_proj are plain
`Linear`s over this rank's rows (its heads, its share of the MLP width), loaded as slices
(`ShardPlan.select`); their outputs stay split and feed this rank's attention heads and
activation. `RowParallelLinear` (o_proj, down_proj) takes that split input, multiplies by
its column slice and sums the partial results over the ranks: one all-reduce per layer each.
"""

from __future__ import annotations

import torch

from radixlm import kernels
from radixlm.runtime.model.layers.linear import Linear


class RowParallelLinear(Linear):
    """y = all_reduce(x_local @ W_local.T) + bias. The weight is [out, in / tp]; the bias
    (replicated) is added once, after the sum. Prepacking (`Linear.prepack`) works per shard."""

    def __init__(self, in_features: int, out_features: int, bias: bool, tp) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.tp = tp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tp.all_reduce(kernels.linear(x, self.weight, None, self.packed))
        return y if self.bias is None else y.add_(self.bias)


def row_linear(in_features: int, out_features: int, bias: bool, tp) -> Linear:
    """A `Linear` when `tp` is None (the single-device path, unchanged), else row-parallel."""
    if tp is None:
        return Linear(in_features, out_features, bias=bias)
    return RowParallelLinear(in_features, out_features, bias, tp)
