"""Residual MLP backbone for tables and other short flat vectors (ACE's proposal network).

The input is [observed values, mask]: one vector for the whole row, so every output sees
every observed variable, and the mask tells the net which zeros are real. Categorical
variables enter one-hot (all of them for categorical data; per column, K_j wide, for the
categorical columns of a mixed table). Conditioning on
the number observed is implicit in the mask. Output: per-variable head parameters, and
optionally a per-variable context vector (ACE's energy network reads it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import NodeNetwork
from ..errors import UserError


class ResidualBlock(nn.Module):
    """Pre-norm block: h + Linear(GELU(Linear(LayerNorm(h))))."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(F.gelu(self.fc1(self.norm(h))))


class ResMLP(NodeNetwork):
    """`net(x_in [B, D], observed [B, D] bool) -> params [B, D, out_features]`.

    num_classes None: x_in is continuous (float). Otherwise x_in holds category ids and is
    one-hot encoded. `levels` (a mixed table, num_classes None): per column None (numeric,
    the value goes in) or K_j (x_in holds a level id as a float, one-hot encoded over K_j).
    Unobserved entries are masked out here as well, so the output never depends on them.
    With `context > 0`, `forward_with_context` also returns a `[B, D, context]` vector per
    variable.
    """

    def __init__(self, dim: int, num_classes: int | None, out_features: int, width: int = 256,
                 depth: int = 4, context: int = 0, levels: list | None = None):
        super().__init__()
        for name, value in (("dim", dim), ("out_features", out_features), ("width", width)):
            if value < 1:
                raise UserError(f"ResMLP: {name} must be >= 1, got {value}")
        if depth < 0 or context < 0:
            raise UserError(f"ResMLP: depth and context must be >= 0, got {depth}, {context}")
        self.dim, self.num_classes = dim, num_classes
        self.out_features, self.context = out_features, context
        in_features = dim * (num_classes or 1) + dim
        self.one_hot_width = 0
        if levels is not None:
            if num_classes is not None or len(levels) != dim:
                raise UserError(f"ResMLP: levels are for continuous-valued tables, one entry per column "
                                f"({dim}), got {len(levels)} with num_classes={num_classes}")
            sizes = [k or 0 for k in levels]            # lists, not tensors: `build_net` sizes us on the meta device
            starts = [sum(sizes[:j]) for j in range(dim)]
            self.register_buffer("numeric", torch.tensor([k == 0 for k in sizes]), persistent=False)
            self.register_buffer("categorical", torch.tensor([j for j, k in enumerate(sizes) if k], dtype=torch.long),
                                 persistent=False)
            self.register_buffer("offsets", torch.tensor([starts[j] for j, k in enumerate(sizes) if k],
                                                         dtype=torch.long), persistent=False)
            self.one_hot_width = sum(sizes)
            in_features += self.one_hot_width
        self.input = nn.Linear(in_features, width)
        self.blocks = nn.ModuleList(ResidualBlock(width) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.output = nn.Linear(width, dim * (out_features + context))

    def _features(self, x_in: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        mask = observed.unsqueeze(-1)
        if self.num_classes is None:
            if self.one_hot_width:      # numeric columns as values, categorical ones one-hot
                values = torch.where(observed & self.numeric, x_in, 0.0)
                values = torch.cat([values, self._one_hot(x_in, observed)], dim=-1)
            else:
                values = torch.where(mask, x_in.unsqueeze(-1), 0.0)
        else:
            ids = torch.where(observed, x_in, 0).long()
            values = F.one_hot(ids, self.num_classes) * mask
        return torch.cat([values.flatten(1), observed], dim=-1).to(self.input.weight.dtype)

    def _one_hot(self, x_in: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """The categorical columns' observed level ids one-hot, side by side: `[B, Σ K_j]`."""
        seen = observed[:, self.categorical]
        ids = torch.where(seen, x_in[:, self.categorical], 0).long() + self.offsets
        out = torch.zeros(len(x_in), self.one_hot_width, dtype=x_in.dtype, device=x_in.device)
        return out.scatter_(1, ids, seen.to(x_in.dtype))

    def forward_with_context(self, x_in: torch.Tensor, observed: torch.Tensor):
        """-> (params `[B, D, out_features]`, context `[B, D, context]`)."""
        h = self.input(self._features(x_in, observed))
        for block in self.blocks:
            h = block(h)
        out = self.output(F.gelu(self.norm(h))).view(len(h), self.dim, self.out_features + self.context)
        return out[..., :self.out_features], out[..., self.out_features:]

    def forward(self, x_in: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        return self.forward_with_context(x_in, observed)[0]

    def output_layers(self) -> tuple[nn.Module, ...]:
        return (self.output,)

    def matmul_flops(self, batch_size: int) -> int:
        """Forward-pass FLOPs of the matrix multiplies (2 per multiply-add) for a batch."""
        linears = [m for m in self.modules() if isinstance(m, nn.Linear)]
        return 2 * batch_size * sum(m.in_features * m.out_features for m in linears)
