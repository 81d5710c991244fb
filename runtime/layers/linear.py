"""A linear layer whose matmul goes through `radixlm.kernels.linear`.

Same parameters and names as `torch.nn.Linear` (so checkpoints load by name); only the
forward differs, letting the CPU path choose the faster GEMM shape per batch size.
"""

from __future__ import annotations

import torch
from torch import nn

from radixlm import kernels


class Linear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.linear(x, self.weight, self.bias)
