"""Path Transformer: every conditional along a protocol path, in any number of steps, in one pass.

Contract: `network(x_in [B, D], path [B, D] int64, step=None) -> params [B, D, out_features]`
(see `PathNetwork`). Two kinds of slot, as in XLNet's two streams:

    content slots  one per variable on the path whose value is known: each given variable
                   j ∈ o and each target u_t, carrying the value x_j and its position j.
                   Given slots attend to given slots (o is a set); the content slot of u_t
                   attends to o and to the content of u_1..u_t of its own path (causal), so
                   that it can serve as a key for any later step.
    query slots    one per target u_t, carrying only the position it predicts (never a value
                   of its own step). The query of a target in step k attends to o, to the
                   content of the targets of its path in steps < k, and to itself.

`step` `[B, D]` gives each target its step k (non-decreasing along the path); None = one
target per step, the exact path likelihood. `step` `[B, S, D]` runs S query streams over one
content stream (training: the exact path and a step budget per row) -> `[B, S, D, P]`.
Variables off the path take no slot. A training row may pack a second sequence of targets
(path values D + 1 + t) after the first; its slots see o and each other, never the first's.
With attention_bias="alibi", head h adds −slope_h·|q − k| to its scores, a query standing at
the variable it predicts and every key at the variable whose value it carries.

Tables: `num_classes` None means continuous values (each numeric column embeds value × its
own vector), `levels` marks the categorical columns of a mixed table (each its own table of
level embeddings); the head (`TableHead`) gives every column its own distribution.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .base import PathNetwork
from .transformer import Block, alibi_slopes, check_options, init_weights, matmul_flops


class ValueEmbedding(nn.Module):
    """A known value as a width vector `[..., W]` from values and their variables `[...]`:
    a token embedding for categorical data; for continuous tables value × a learned vector per
    column, and for the categorical columns of a mixed table (`levels[j]` = K_j) a per-column
    embedding of the level id."""

    def __init__(self, dim: int, num_classes: int | None, width: int, levels: list | None = None):
        super().__init__()
        self.categorical = bool(num_classes)
        if self.categorical:
            self.token = nn.Embedding(num_classes, width)
            return
        counts = [k or 0 for k in (levels or [None] * dim)]     # summed as a list: `build_net` sizes us on the meta device
        if len(counts) != dim:
            raise UserError(f"PathTransformer: levels need one entry per column ({dim}), got {len(counts)}")
        sizes = torch.tensor(counts)
        self.scale = nn.Parameter(torch.zeros(dim, width))
        self.level = nn.Embedding(max(1, sum(counts)), width)
        self.register_buffer("sizes", sizes, persistent=False)
        self.register_buffer("offsets", sizes.cumsum(0) - sizes, persistent=False)

    def forward(self, value: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        if self.categorical:
            return self.token(value.long())
        size = self.sizes[var]
        numeric = value.float().unsqueeze(-1) * self.scale[var]
        level = torch.minimum(value.long().clamp(min=0), (size - 1).clamp(min=0))
        index = torch.where(size > 0, self.offsets[var] + level, 0)
        return torch.where((size > 0).unsqueeze(-1), self.level(index), numeric)


CACHE_BLOCK = 32      # a key/value cache grows by whole blocks of this many slots


@dataclass
class PathCache:
    """The content slots so far: keys and values per block `[B, heads, capacity, W / heads]`
    (the first `length` filled; preallocated in whole `CACHE_BLOCK`s, so a step writes its
    slots instead of copying the cache), each key's variable `[B, capacity]`, an additive key
    mask `[B, capacity]` in the compute dtype (0 where a key exists, −inf elsewhere, empty
    slots included), and `given`: the slots holding o (padded)."""

    keys: list
    values: list
    key_position: torch.Tensor
    key_mask: torch.Tensor
    length: int
    given: int


def _whole_blocks(slots: int) -> int:
    """`slots` rounded up to whole `CACHE_BLOCK`s: a cache's capacity."""
    return -(-slots // CACHE_BLOCK) * CACHE_BLOCK


def _reserve(cache: PathCache, end: int) -> None:
    """Room for `end` slots: the capacity rounded up to whole `CACHE_BLOCK`s (new slots absent)."""
    more = _whole_blocks(end) - cache.key_mask.shape[1]
    if more <= 0:
        return

    def pad(t):
        return torch.cat([t, t.new_zeros(*t.shape[:2], more, t.shape[-1])], 2)

    cache.keys, cache.values = [pad(k) for k in cache.keys], [pad(v) for v in cache.values]
    cache.key_position = torch.cat([cache.key_position, cache.key_position.new_zeros(len(cache.key_mask), more)], 1)
    cache.key_mask = torch.cat([cache.key_mask, cache.key_mask.new_full((len(cache.key_mask), more), float("-inf"))], 1)



def _compute_dtype(h: torch.Tensor) -> torch.dtype:
    """The dtype a block's attention scores come out in: autocast's where it is on, else h's."""
    if torch.is_autocast_enabled(h.device.type):
        return torch.get_autocast_dtype(h.device.type)
    return h.dtype


@functools.lru_cache(maxsize=256)
def _new_slot_rules(m: int, q: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Who sees whom among a cache step's new slots (m content, then q queries in scratch
    slots), `[m + q, m + q]` bool each: `rules` (content slot i sees new content j <= i, a
    query every new content slot; both only where that slot is valid) and `own` (every slot
    sees itself, valid or not, so no row is empty). Cached: a walk asks the same shapes."""
    rules = torch.zeros(m + q, m + q, dtype=torch.bool, device=device)
    rules[:m, :m] = torch.ones(m, m, dtype=torch.bool, device=device).tril()
    rules[m:, :m] = True
    return rules, torch.eye(m + q, dtype=torch.bool, device=device)


def _attend(q, k, v, bias, dropout_p: float = 0.0) -> torch.Tensor:
    """softmax(q·kᵀ/√d + bias)·v, `[B, H, L, d]` over `[B, H, Lk, d]` with bias `[B, H, L, Lk]` in
    the scores' dtype: three explicit ops (on a CPU, in bf16 or with a bias, faster than torch's
    fused kernel; see `nets.transformer.attention`), the scale applied to q (L·d, not L·Lk)."""
    weights = torch.softmax((q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2) + bias, -1)
    return (F.dropout(weights, dropout_p) if dropout_p else weights) @ v


def _attend_and_self(q, k, v, k_self, v_self, bias, dropout_p: float = 0.0) -> torch.Tensor:
    """Attention of each query over the keys k, v `[B, H, Lk, d]` (bias `[B, H, L, Lk]`) and over
    its own key and value (`k_self`, `v_self` `[B, H, L, d]`, never among k): one extra score
    per query, so the softmax runs over [scores, self] and the output is P·V + p_self·v_self."""
    q = q * q.shape[-1] ** -0.5
    own = (q * k_self).sum(-1, keepdim=True)
    scores = torch.cat([q @ k.transpose(-1, -2) + bias, own], -1)
    weights = F.dropout(torch.softmax(scores, -1), dropout_p)
    to_keys, to_self = weights.split([k.shape[2], 1], -1)
    return to_keys @ v + to_self * v_self


class PathTransformer(PathNetwork):
    """Pre-LayerNorm Transformer over content and query slots (module docstring).

    Arguments as `Transformer`'s; attention_bias "alibi" (default) or "none" (learned
    positions only); levels: the categorical columns of a mixed table (see `ValueEmbedding`).
    """

    def __init__(self, dim: int, num_classes: int | None, out_features: int, width: int = 256,
                 depth: int = 4, heads: int = 4, mlp: int | None = None, dropout: float = 0.0,
                 attention_bias: str = "alibi", levels: list | None = None):
        super().__init__()
        check_options("PathTransformer", dim=dim, width=width, depth=depth, heads=heads, mlp=mlp,
                      dropout=dropout, attention_bias=attention_bias)
        self.dim, self.num_classes, self.heads = dim, num_classes, heads
        self.value = ValueEmbedding(dim, num_classes, width, levels)
        self.position = nn.Parameter(torch.zeros(dim, width))   # the variable a content slot holds
        self.predicts = nn.Parameter(torch.zeros(dim, width))   # the variable a query slot predicts
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, heads, mlp or 4 * width, dropout) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, out_features)
        slopes = alibi_slopes(heads) if attention_bias == "alibi" else torch.zeros(heads)
        self.register_buffer("slopes", slopes, persistent=False)
        scales = [] if self.value.categorical else [self.value.scale]
        init_weights(self, [self.position, self.predicts, *scales], self.blocks, depth)

    def _content(self, value, var):
        return self.drop(self.value(value, var) + self.position[var])

    def _query(self, var):
        return self.drop(self.predicts[var])

    def _bias(self, query_position, key_position, allowed, dtype=torch.float32):
        """Additive attention bias `[B, heads, …, Lq, Lk]` in `dtype`: ALiBi on variable distance,
        −inf where not `allowed` `[B, …, Lq, Lk]` (e.g. `[B, S, Lq, Lk]`: S streams of the same
        query positions, which share the distances)."""
        distance = (query_position[:, :, None] - key_position[:, None, :]).abs().to(dtype)   # [B, Lq, Lk]
        extra = allowed.dim() - 3
        slopes = self.slopes.to(dtype).view(1, -1, *[1] * (extra + 2))
        bias = slopes * -distance.view(len(distance), 1, *[1] * extra, *distance.shape[1:])
        return bias.masked_fill(~allowed[:, None], float("-inf"))

    def _cache_bias(self, cache: PathCache, slots: torch.Tensor, new: torch.Tensor, dtype) -> torch.Tensor:
        """The bias `[B, heads, L, capacity]` in `dtype` of L new rows (variables `slots` `[B, L]`,
        written into the cache's slots n = `cache.length` … n + L − 1) over the whole cache:
        ALiBi; on the earlier slots their key mask, on the new ones `new` `[B, L, L]` (who sees
        whom among them), the empty slots after them −inf. Built in place, no copies."""
        n, L = cache.length, slots.shape[1]
        distance = (slots[:, :, None] - cache.key_position[:, None, :]).abs().to(dtype)    # [B, L, capacity]
        bias = distance[:, None] * -self.slopes.to(dtype)[:, None, None]
        bias[..., :n] += cache.key_mask[:, None, None, :n].to(dtype)
        bias[..., n:n + L].masked_fill_(~new[:, None], float("-inf"))
        bias[..., n + L:] = float("-inf")
        return bias

    def forward(self, x_in: torch.Tensor, path: torch.Tensor, step: torch.Tensor | None = None) -> torch.Tensor:
        """The content slots attend to content slots only, and a query slot to content slots and
        itself: so each block computes content→content (Lc × Lc) and query→content scores
        (S·Lq × Lc) plus one self score per query, never the (Lc + S·Lq)² square of all slots,
        with biases built once per pass in the compute dtype (bf16 under autocast), and the
        last block skips the content slots' outputs (no query reads them)."""
        D = self.dim
        if x_in.shape != path.shape or x_in.dim() != 2 or x_in.shape[1] != D or path.dtype != torch.int64:
            raise ValueError(f"PathTransformer expects x_in [B, {D}] and an int64 path of the same "
                             f"shape, got {tuple(x_in.shape)} and {path.dtype} {tuple(path.shape)}")
        streams = step is not None and step.dim() == 3
        if step is None:
            step = torch.where(path > D, path - D - 1, path)      # one target per step
        step = step if streams else step.unsqueeze(1)
        if step.shape[0] != len(path) or step.shape[-1] != D or step.dtype != torch.int64:
            raise ValueError(f"step must be int64 [B, {D}] or [B, S, {D}], got {step.dtype} {tuple(step.shape)}")
        B, S = step.shape[:2]
        device = path.device
        given, on = path < 0, path != D
        n_given, n_on = given.sum(-1, keepdim=True), on.sum(-1, keepdim=True)
        Lc = int(n_on.max()) if B else 0
        Lq = int((n_on - n_given).max()) if B else 0
        # Content slots: o (by variable), the first path's targets, the second path's, then off.
        order = torch.where(on, path, 3 * D).argsort(dim=-1, stable=True)[:, :Lc]
        c = torch.arange(Lc, device=device)
        c_given, c_valid = c < n_given, c < n_on
        c_target, c_second = c_valid & ~c_given, path.gather(1, order) > D
        c_step = step.gather(2, order[:, None].expand(B, S, Lc))                    # [B, S, Lc]
        # Query slots: one per target and stream; slot t of a stream predicts content slot n_given + t.
        q_slot = (n_given + torch.arange(Lq, device=device)).clamp(max=max(Lc - 1, 0))
        q_valid = torch.arange(Lq, device=device) < n_on - n_given
        q_var, q_second = order.gather(1, q_slot), c_second.gather(1, q_slot)
        q_step = c_step.gather(2, q_slot[:, None].expand(B, S, Lq))                 # [B, S, Lq]
        same = c_second[:, :, None] == c_second[:, None, :]
        content = c_valid[:, None, :] & (c_given[:, None, :] | (c_target[:, :, None] & c_target[:, None, :]
                                                                & same & (c[None, :] <= c[:, None])))
        content = content | torch.eye(Lc, dtype=torch.bool, device=device)
        earlier = (c_step[:, :, None, :] < q_step[..., None]) & (q_second[:, None, :, None] == c_second[:, None, None, :])
        query = c_valid[:, None, None, :] & (c_given[:, None, None, :] | (c_target[:, None, None, :] & earlier))
        h = torch.cat([self._content(x_in.gather(1, order), order), self._query(q_var).repeat(1, S, 1)], 1)
        dtype = _compute_dtype(h)
        content_bias = self._bias(order, order, content, dtype)                      # [B, H, Lc, Lc]
        query_bias = self._bias(q_var, order, query, dtype).flatten(2, 3)            # [B, H, S·Lq, Lc]
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            # split, not slices: a slice's backward fills a zero tensor of the whole per part
            (q_c, q_q), (k_c, k_q), (v_c, v_q) = (t.split([Lc, S * Lq], 2) for t in block.queries_keys_values(h))
            p = block.dropout if self.training else 0.0
            a_q = _attend_and_self(q_q, k_c, v_c, k_q, v_q, query_bias, p)
            if i == last:                        # no query reads the last block's content outputs
                h = block.update(h.split([Lc, S * Lq], 1)[1], a_q)
                break
            a_c = _attend(q_c, k_c, v_c, content_bias, p)
            h = block.update(h, torch.cat([a_c, a_q], 2))
        queries = h if self.blocks else h[:, Lc:]       # the last block kept the query slots only
        out = self.head(self.ln_f(queries)).view(B, S, Lq, self.head.out_features)
        where = torch.where(q_valid, q_var, D)[:, None, :, None].expand_as(out)   # padding -> column D
        params = out.new_zeros(B, S, D + 1, out.shape[-1]).scatter(2, where, out)[:, :, :D]
        return params if streams else params[:, 0]

    def begin(self, x_in: torch.Tensor, given: torch.Tensor) -> PathCache:
        B = len(given)
        n_given = given.sum(-1, keepdim=True)
        length = int(n_given.max()) if B else 0
        order = (~given).long().argsort(dim=-1, stable=True)[:, :length]   # given variables first
        valid = torch.arange(length, device=given.device) < n_given
        eye = torch.eye(length, dtype=torch.bool, device=given.device)
        h = self._content(x_in.gather(1, order), order)
        bias = self._bias(order, order, valid[:, None, :] | eye, _compute_dtype(h))
        room = _whole_blocks(length + 1) - length    # and for the first targets
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            q, k, v = block.queries_keys_values(h)
            keys.append(torch.cat([k, k.new_zeros(*k.shape[:2], room, k.shape[-1])], 2))
            values.append(torch.cat([v, v.new_zeros(*v.shape[:2], room, v.shape[-1])], 2))
            if i + 1 < len(self.blocks):        # the last block's output is no key: skip it
                h = block.update(h, _attend(q, k, v, bias))
        key_mask = torch.full((B, length + room), float("-inf"), dtype=bias.dtype, device=given.device)
        key_mask[:, :length].masked_fill_(valid, 0.0)
        return PathCache(keys, values, torch.cat([order, order.new_zeros(B, room)], 1), key_mask, length, length)

    def extend(self, cache: PathCache, var: torch.Tensor, value: torch.Tensor, valid: torch.Tensor,
               then: torch.Tensor | None = None) -> torch.Tensor | None:
        """Append content slots (see `PathNetwork.extend`). With `then` `[B, q]`, also the
        next step's query slots in the same pass through the blocks (`predict(cache, then)`
        after the append, at half the per-layer calls); returns their parameters `[B, q, P]`.

        A walk step at a small batch is bound by per-call overhead and by reading the cache,
        so each block takes a fixed handful of calls whatever the block size: the new slots'
        keys and values are written into the cache (the queries' into scratch slots past the
        new content, which the next step overwrites), then every new row attends over the
        whole cache in place: a content slot to the earlier slots and its own block's up to
        itself, a query to every content slot and its own scratch slot, the empty slots
        masked. The whole cache, not a slice of it, is one contiguous tensor per block, which
        a bf16 product reads as it is (a slice it would copy first); the empty slots cost
        under a `CACHE_BLOCK` per row."""
        n, m = cache.length, var.shape[1]
        q = 0 if then is None else then.shape[1]
        _reserve(cache, n + m + q)
        slots, h = var, self._content(value, var)
        if then is not None:
            slots, h = torch.cat([var, then], 1), torch.cat([h, self._query(then)], 1)
        cache.key_position[:, n:n + m + q] = slots
        cache.key_mask[:, n:n + m] = torch.where(valid, 0.0, float("-inf"))
        rules, own = _new_slot_rules(m, q, var.device)
        usable = torch.cat([valid, valid.new_ones(len(var), q)], 1)
        bias = self._cache_bias(cache, slots, (rules & usable[:, None, :]) | own, _compute_dtype(h))
        last = len(self.blocks) - 1
        for i, (block, keys, values) in enumerate(zip(self.blocks, cache.keys, cache.values)):
            qs, k, v = block.queries_keys_values(h)
            keys[:, :, n:n + m + q], values[:, :, n:n + m + q] = k, v
            if i == last:
                if then is None:
                    break                        # the last block's output is no key: skip it
                qs, h, bias = qs[:, :, m:], h[:, m:], bias[:, :, m:]   # only the queries' outputs are read
            h = block.update(h, _attend(qs, keys, values, bias))
        cache.length = n + m
        if then is None:
            return None
        return self.head(self.ln_f(h if self.blocks else h[:, m:]))

    def predict(self, cache: PathCache, var: torch.Tensor, seen: torch.Tensor | None = None) -> torch.Tensor:
        """See `PathNetwork.predict`; the queries' own keys go to scratch slots past the cache's
        content (as in `extend`), so each block attends over the cache in place."""
        n, m = cache.length, var.shape[1]
        _reserve(cache, n + m)
        cache.key_position[:, n:n + m] = var
        h = self._query(var)
        own = _new_slot_rules(0, m, var.device)[1]
        bias = self._cache_bias(cache, var, own.expand(len(var), -1, -1), _compute_dtype(h))
        if seen is not None:
            hidden = torch.arange(n, device=var.device) >= cache.given + seen[..., None]   # [B, m, n]
            bias[..., :n].masked_fill_(hidden[:, None], float("-inf"))
        for block, keys, values in zip(self.blocks, cache.keys, cache.values):
            q, k, v = block.queries_keys_values(h)
            keys[:, :, n:n + m], values[:, :, n:n + m] = k, v
            h = block.update(h, _attend(q, keys, values, bias))
        return self.head(self.ln_f(h))

    def output_layers(self) -> tuple[nn.Module, ...]:
        return (self.head,)

    def matmul_flops(self, batch_size: int) -> int:
        """Matmul FLOPs of one forward pass over a full path: D content and D query slots (for MFU)."""
        return matmul_flops(self.blocks, self.head, batch_size, 2 * self.dim)
