"""Path Transformer: every conditional along a protocol path in one pass (a path network).

Contract: `network(x_in [B, D] int64, path [B, D] int64) -> params [B, D, out_features]`
(see `PathNetwork`). Each row is laid out in path order as one sequence of slots:

    given slots   one per variable j in o: the value x_j, the position j, a "given" marker;
                  they attend to given slots only (o is a set: its order cannot matter).
    target slots  slot t predicts u_t: it carries the previous target's value x_{u_{t-1}}
                  (a start token for t = 0) with that variable's position, plus a second
                  position embedding of u_t, the variable to predict (σ-GPT's double
                  position); it attends to every given slot and to target slots <= t.

Variables off the path take no slot. A training row may pack a second sequence of targets
(path values D + 1 + t) after the first; its slots see o and each other, never the first's. With attention_bias="alibi", head h adds
−slope_h·|q − k| to its scores, where a target slot's query stands at the variable it
predicts and every key at the variable whose value it carries: an infilling prediction
looks first at the neighbours of the gap it fills, whatever their order on the path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import PathNetwork
from .transformer import Block, alibi_slopes, init_weights, matmul_flops


def _rows_linear(layer: nn.Linear, h: torch.Tensor) -> torch.Tensor:
    """layer(h) for a few rows h `[B, in]` as (W·hᵀ + b)ᵀ: BLAS then streams W in its stored
    layout, about 1.5x faster than h·Wᵀ at B = 2 on a CPU. Contiguous `[B, out]`, as the
    fused attention kernel wants its inputs."""
    return torch.addmm(layer.bias[:, None], layer.weight, h.t()).t().contiguous()


def _identity(h: torch.Tensor) -> torch.Tensor:
    return h


def _layer_norm(norm: nn.LayerNorm, h: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(h, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


@dataclass
class PathCache:
    """Keys and values of the slots so far, per block `[B, heads, capacity, W / heads]`
    (the first `length` filled: preallocated, so a step writes one slot instead of copying
    the cache), each key's variable position `[B, capacity]`, an additive key mask
    `[B, 1, 1, capacity]` (0 where a key exists, −inf elsewhere), and the last target."""

    keys: list
    values: list
    key_position: torch.Tensor
    key_mask: torch.Tensor
    length: int
    previous: torch.Tensor | None = None


class PathTransformer(PathNetwork):
    """Pre-LayerNorm Transformer over path slots: `(x_in [B, D], path [B, D]) -> [B, D, out_features]`.

    Arguments as `Transformer`'s; attention_bias "alibi" (default) or "none" (learned
    positions only).
    """

    def __init__(self, dim: int, num_classes: int, out_features: int, width: int = 256,
                 depth: int = 4, heads: int = 4, mlp: int | None = None, dropout: float = 0.0,
                 attention_bias: str = "alibi"):
        super().__init__()
        if width % heads:
            raise ValueError(f"width ({width}) must be divisible by heads ({heads})")
        if attention_bias not in ("none", "alibi"):
            raise ValueError(f"attention_bias must be 'none' or 'alibi', got {attention_bias!r}")
        self.dim, self.num_classes, self.heads = dim, num_classes, heads
        self.token = nn.Embedding(num_classes + 1, width)          # index num_classes = start
        self.position = nn.Parameter(torch.zeros(dim + 1, width))   # carried value's variable; row D: none
        self.predicts = nn.Parameter(torch.zeros(dim + 1, width))   # variable to predict; row D: given slot
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, heads, mlp or 4 * width, dropout) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, out_features)
        slopes = alibi_slopes(heads) if attention_bias == "alibi" else torch.zeros(heads)
        self.register_buffer("slopes", slopes, persistent=False)
        init_weights(self, [self.position, self.predicts], self.blocks, depth)

    def _embed(self, value, carried, predicted):
        """Slot inputs `[B, L, W]` from the carried value, its variable and the predicted variable
        (`[B, L]` each; value = num_classes and variable D mean none)."""
        return self.drop(self.token(value) + self.position[carried] + self.predicts[predicted])

    def _bias(self, query_position, key_position, allowed):
        """Additive attention bias `[B, heads, Lq, Lk]`: ALiBi on variable distance, −inf where not allowed."""
        distance = (query_position[:, :, None] - key_position[:, None, :]).abs()
        bias = -self.slopes[None, :, None, None] * distance[:, None].float()
        return bias.masked_fill(~allowed[:, None], float("-inf"))

    def forward(self, x_in: torch.Tensor, path: torch.Tensor) -> torch.Tensor:
        if x_in.shape != path.shape or x_in.dim() != 2 or x_in.shape[1] != self.dim or path.dtype != torch.int64:
            raise ValueError(f"PathTransformer expects x_in [B, {self.dim}] and an int64 path of the same "
                             f"shape, got {tuple(x_in.shape)} and {path.dtype} {tuple(path.shape)}")
        D = self.dim
        on_path, first = path != D, (path >= 0) & (path < D)
        n_given = (path < 0).sum(-1, keepdim=True)
        n_first = n_given + first.sum(-1, keepdim=True)         # slots of o and the first targets
        n_on = on_path.sum(-1, keepdim=True)
        length = int(n_on.max()) if len(path) else 0
        # Slots: o, the first path's targets, the second path's (values D + 1 + t), then off.
        order = torch.where(on_path, path, 3 * D).argsort(dim=-1, stable=True)[:, :length]
        slot = torch.arange(length, device=path.device)
        is_given, on = slot < n_given, slot < n_on
        is_target, second = on & ~is_given, slot >= n_first
        after_first = is_target & (slot != n_given) & (slot != n_first)   # each path's first target: start
        carried = torch.where(is_given, order, torch.where(after_first, order.roll(1, -1), D))
        value = torch.where(carried < D, x_in.gather(1, carried.clamp(max=D - 1)), self.num_classes)
        predicted = torch.where(is_target, order, D)
        key_position = torch.where(carried < D, carried, order)
        causal = (slot[:, None] >= slot[None, :]) & (second[:, :, None] == second[:, None, :])
        allowed = ((is_given[:, None, :] & on[:, :, None])
                   | (is_target[:, :, None] & is_target[:, None, :] & causal)
                   | torch.eye(length, dtype=torch.bool, device=path.device))
        bias = self._bias(order, key_position, allowed)
        h = self._embed(value, carried, predicted)
        for block in self.blocks:
            h = block(h, bias)
        out = self.head(self.ln_f(h)) * is_target[..., None]
        params = out.new_zeros(len(path), D, out.shape[-1])
        return params.scatter(1, order[..., None].expand_as(out), out)

    def begin(self, x_in: torch.Tensor, given: torch.Tensor) -> PathCache:
        D = self.dim
        n_given = given.sum(-1, keepdim=True)
        length = int(n_given.max()) if len(given) else 0
        order = (~given).long().argsort(dim=-1, stable=True)[:, :length]   # given variables first
        valid = torch.arange(length, device=given.device) < n_given
        h = self._embed(x_in.gather(1, order), order, torch.full_like(order, D))
        eye = torch.eye(length, dtype=torch.bool, device=given.device)
        bias = self._bias(order, order, valid[:, None, :] | eye)
        keys, values = [], []
        for block in self.blocks:
            q, k, v = block.queries_keys_values(h)
            h = block.update(h, block.attend(q, k, v, bias))
            keys.append(torch.cat([k, k.new_zeros(*k.shape[:2], D, k.shape[-1])], 2))   # room for D targets
            values.append(torch.cat([v, v.new_zeros(*v.shape[:2], D, v.shape[-1])], 2))
        key_mask = torch.zeros(len(order), 1, 1, length + D, dtype=h.dtype, device=h.device)
        key_mask[:, 0, 0, :length].masked_fill_(~valid, float("-inf"))
        return PathCache(keys, values, torch.cat([order, order.new_zeros(len(order), D)], 1), key_mask, length)

    def extend(self, cache: PathCache, var: torch.Tensor, value: torch.Tensor | None) -> torch.Tensor:
        """One new slot through every block, as `[B, W]` rows (a step at a small batch is
        bound by per-operation overhead, so this walks the blocks' weights directly, without
        module calls or reshapes to `[B, 1, W]`); the arithmetic is the forward pass's."""
        D, n = self.dim, cache.length
        if cache.previous is None:      # the first target carries the start token, keyed at its own position
            carried, value = torch.full_like(var, D), torch.full_like(var, self.num_classes)
        else:
            carried = cache.previous
        cache.key_position[:, n] = var if cache.previous is None else carried
        cache.key_mask[:, :, :, n] = 0.0
        cache.length, cache.previous = n + 1, var
        distance = (var[:, None] - cache.key_position[:, :n + 1]).abs()[:, None, None]   # [B, 1, 1, n+1]
        bias = cache.key_mask[..., :n + 1] - self.slopes[:, None, None] * distance
        h = self.drop(self.token.weight[value] + self.position[carried] + self.predicts[var])
        for block, keys, values in zip(self.blocks, cache.keys, cache.values):
            h = self._step(block, h, keys, values, n, bias)
        return _rows_linear(self.head, _layer_norm(self.ln_f, h))

    @staticmethod
    def _step(block: Block, h: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, n: int,
              bias: torch.Tensor) -> torch.Tensor:
        """`block` on one new slot per row, h `[B, W]`: its key and value go to slot n of the
        cache `[B, heads, capacity, W / heads]`, its query attends to slots 0..n."""
        B, W = h.shape
        drop = block.drop if block.training and block.dropout else _identity
        qkv = _rows_linear(block.qkv, _layer_norm(block.ln1, h))
        q, k, v = qkv.view(B, 3, block.heads, 1, W // block.heads).unbind(1)
        keys[:, :, n:n + 1], values[:, :, n:n + 1] = k, v
        a = block.attend(q, keys[:, :, :n + 1], values[:, :, :n + 1], bias)
        h = h + drop(_rows_linear(block.proj, a.reshape(B, W)))
        m = F.gelu(_rows_linear(block.fc, _layer_norm(block.ln2, h)))
        return h + drop(_rows_linear(block.out, m))

    def output_layers(self) -> tuple[nn.Module, ...]:
        return (self.head,)

    def matmul_flops(self, batch_size: int) -> int:
        """Matmul FLOPs of one forward pass over a full path of D slots (for MFU)."""
        return matmul_flops(self.blocks, self.head, batch_size, self.dim)
