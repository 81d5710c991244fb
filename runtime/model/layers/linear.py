"""A linear layer whose matmul goes through `radixlm.kernels.linear`.

Same parameters and names as `torch.nn.Linear` (so checkpoints load by name); only the
forward differs: on the CPU it multiplies by a copy of the weight prepacked for oneDNN
(`prepack`, called once the weights are loaded), which is not a parameter, so state dicts
and checkpoints do not see it.
"""

from __future__ import annotations

import torch
from torch import nn

from radixlm import kernels


class Linear(nn.Linear):
    packed: torch.Tensor | None = None

    def prepack(self) -> bool:
        """Prepack the loaded weight for the CPU path; False where that does not apply."""
        self.packed = kernels.prepack_weight(self.weight)
        return self.packed is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.linear(x, self.weight, self.bias, self.packed)
