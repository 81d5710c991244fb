"""RMSNorm module over `radixlm.kernels.rms_norm` (fused residual add when given one)."""

from __future__ import annotations

import torch
from torch import nn

from radixlm import kernels


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        """Returns normed x, or (normed, x + residual) when residual is given."""
        return kernels.rms_norm(x, self.weight, self.eps, residual)
