"""Bidirectional pre-LayerNorm Transformer over D categorical variables (the text backbone).

Contract: `network(x_in [B, D] int64, observed [B, D] bool) -> params [B, D, out_features]`.
Unobserved positions see a learned mask token, never their value, so one pass at node s
gives p(x_j | x_s) for every j ∉ s.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .base import NodeNetwork


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None,
              dropout_p: float = 0.0) -> torch.Tensor:
    """softmax(q·kᵀ/√d + bias)·v over `[B, H, L, d]` queries and `[B, H, D, d]` keys and
    values (bias broadcastable to `[B, H, L, D]`, or None).

    torch's fused kernel everywhere but on a CPU in bf16 or with a bias, where these three
    explicit ops are faster: in bf16 its forward + backward ran 2x slower (D = 250, 4 heads
    of 64: 163 vs 77 ms; 20% of a training step), and with a float bias it scans the bias
    for rows of −inf on every call (text-cpu's shapes, fp32, forward + backward: 26 vs 21
    ms; a forward alone 0.9 vs 0.35 ms); `benchmarks/throughput.py` measures the paths.
    """
    if q.device.type != "cpu" or (q.dtype != torch.bfloat16 and bias is None):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)
    scores = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
    weights = torch.softmax(scores if bias is None else scores + bias, -1)
    return F.dropout(weights, dropout_p) @ v


class Block(nn.Module):
    """x + attention(LN(x)), then x + MLP(LN(x)); full (non-causal) attention."""

    def __init__(self, width: int, heads: int, mlp: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.fc = nn.Linear(width, mlp)
        self.out = nn.Linear(mlp, width)

    def forward(self, h: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.queries_keys_values(h)
        return self.update(h, self.attend(q, k, v, bias))

    def queries_keys_values(self, h: torch.Tensor):
        """`[B, L, W]` -> q, k, v, each `[B, heads, L, W / heads]` (a key/value cache stores k, v).

        Here and in `update` the layers are called through their functional forms, not as
        modules: a key/value-cache step at a small batch is bound by per-call overhead."""
        B, L, W = h.shape
        x = F.layer_norm(h, (W,), self.ln1.weight, self.ln1.bias, self.ln1.eps)
        return F.linear(x, self.qkv.weight, self.qkv.bias).view(B, L, 3, self.heads, W // self.heads).permute(2, 0, 3, 1, 4)

    def attend(self, q, k, v, bias: torch.Tensor | None) -> torch.Tensor:
        """Attention of q over k, v with an additive bias (−inf = not allowed): `[B, heads, L, W / heads]`."""
        bias = None if bias is None else bias.to(q.dtype)
        return attention(q, k, v, bias, self.dropout if self.training else 0.0)

    def at(self, h: torch.Tensor, var: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """`forward(h, bias)` at one position per row only, `[B, L, W]`, `var [B]` -> `[B, 1, W]`:
        keys and values at every position, the query, attention, MLP at `var` alone."""
        B, L, W = h.shape
        x = self.ln1(h)
        kv = F.linear(x, self.qkv.weight[W:], self.qkv.bias[W:])
        k, v = kv.view(B, L, 2, self.heads, W // self.heads).permute(2, 0, 3, 1, 4)
        rows = torch.arange(B, device=h.device)
        q = F.linear(x[rows, var], self.qkv.weight[:W], self.qkv.bias[:W]).view(B, self.heads, 1, W // self.heads)
        bias = None if bias is None else bias[:, var].transpose(0, 1).unsqueeze(2)   # [B, heads, 1, L]
        return self.update(h[rows, var].unsqueeze(1), self.attend(q, k, v, bias))

    def update(self, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """The residual updates from the attention output a: h + proj(a), then the MLP."""
        B, L, W = h.shape
        h = h + F.dropout(F.linear(a.transpose(1, 2).reshape(B, L, W), self.proj.weight, self.proj.bias),
                          self.dropout, self.training)
        x = F.layer_norm(h, (W,), self.ln2.weight, self.ln2.bias, self.ln2.eps)
        return h + F.dropout(F.linear(F.gelu(F.linear(x, self.fc.weight, self.fc.bias)), self.out.weight, self.out.bias),
                             self.dropout, self.training)


def alibi_slopes(heads: int) -> torch.Tensor:
    """ALiBi's per-head slopes 1, 1/2, 1/4, …: head h adds −slope_h · distance to its scores."""
    return 2.0 ** -torch.arange(heads, dtype=torch.float32)


def init_weights(net: nn.Module, positions, blocks, depth: int) -> None:
    """GPT-2 init: N(0, 0.02) (also the position tables), residual projections scaled by
    1/√(2·depth); the output layer `net.head` starts at zero so the untrained model predicts
    the head's neutral parameters."""
    for module in net.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)
    for table in positions:
        nn.init.normal_(table, std=0.02)
    for block in blocks:
        nn.init.normal_(block.proj.weight, std=0.02 / math.sqrt(2 * depth))
        nn.init.normal_(block.out.weight, std=0.02 / math.sqrt(2 * depth))
    nn.init.zeros_(net.head.weight)


def matmul_flops(blocks, head: nn.Linear, batch_size: int, length: int) -> int:
    """2·m·n·k summed over every matmul of one pass of `blocks` and `head` over `[batch_size,
    length]` positions: QKV, attention scores, attention·V, output projection, MLP, final linear."""
    tokens = batch_size * length
    flops = 2 * tokens * head.in_features * head.out_features
    for block in blocks:
        width = block.proj.in_features
        for linear in (block.qkv, block.proj, block.fc, block.out):
            flops += 2 * tokens * linear.in_features * linear.out_features
        flops += 2 * 2 * tokens * length * width     # Q·Kᵀ and A·V, summed over heads
    return flops


def check_options(network: str, dim: int, width: int, depth: int, heads: int, mlp: int | None,
                  dropout: float, attention_bias: str) -> None:
    """Refuse a Transformer-like network's options with one line before any layer is built
    (a zero head count would otherwise fail as a division, a bad width deep inside torch)."""
    for name, value in (("dim", dim), ("width", width), ("depth", depth), ("heads", heads), ("mlp", mlp or 1)):
        if value < 1:
            raise UserError(f"{network}: {name} must be >= 1, got {value}")
    if not 0 <= dropout < 1:
        raise UserError(f"{network}: dropout must lie in [0, 1), got {dropout}")
    if width % heads:
        raise UserError(f"{network}: width ({width}) must be divisible by heads ({heads})")
    if attention_bias not in ("none", "alibi"):
        raise UserError(f"{network}: attention_bias must be 'none' or 'alibi', got {attention_bias!r}")


class Transformer(NodeNetwork):
    """Bidirectional Transformer: `(x_in [B, D] int64, observed [B, D] bool) -> [B, D, out_features]`.

    Input per position: token embedding where observed, a learned mask embedding where not
    (so the output cannot depend on unobserved values), plus a learned position embedding,
    plus an embedding of |s| = number of observed variables (0..D), which tells every
    position how far along its path the node is (as ARDM's U-Net gets it).

    attention_bias="alibi" adds −slope_h·|i − j| to head h's attention scores (slopes 1,
    1/2, 1/4, ...), a symmetric ALiBi. A masked position must find its neighbours by
    attention alone; with learned positions only, small models sit at the unigram loss
    for a long time before discovering locality (text-cpu: still there after 1200 steps),
    while with the bias they use neighbours early. "none" is the paper's plain Transformer.
    """

    def __init__(self, dim: int, num_classes: int, out_features: int, width: int = 256,
                 depth: int = 4, heads: int = 4, mlp: int | None = None, dropout: float = 0.0,
                 attention_bias: str = "none"):
        super().__init__()
        check_options("Transformer", dim=dim, width=width, depth=depth, heads=heads, mlp=mlp,
                      dropout=dropout, attention_bias=attention_bias)
        if num_classes < 2 or out_features < 1:
            raise UserError(f"Transformer needs num_classes >= 2 and out_features >= 1, got "
                            f"{num_classes}, {out_features}")
        self.dim, self.num_classes = dim, num_classes
        self.token = nn.Embedding(num_classes + 1, width)      # index num_classes = mask token
        self.position = nn.Parameter(torch.zeros(dim, width))
        self.cardinality = nn.Embedding(dim + 1, width)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, heads, mlp or 4 * width, dropout) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, out_features)
        if attention_bias == "alibi":
            distance = (torch.arange(dim)[:, None] - torch.arange(dim)).abs()
            self.register_buffer("bias", -alibi_slopes(heads)[:, None, None] * distance, persistent=False)
        else:
            self.bias = None
        init_weights(self, [self.position], self.blocks, depth)

    def forward(self, x_in: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        return self.head(self.ln_f(self.hidden(x_in, observed, self.blocks)))

    def forward_at(self, x_in: torch.Tensor, observed: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """`forward(x_in, observed)[arange(B), var]` with the last block's queries, its MLP and
        the head computed at `var [B]` alone: `[B, out_features]`."""
        h = self.hidden(x_in, observed, self.blocks[:-1])
        return self.head(self.ln_f(self.blocks[-1].at(h, var, self.bias))).squeeze(1)

    def hidden(self, x_in: torch.Tensor, observed: torch.Tensor, blocks) -> torch.Tensor:
        """The embedded input after `blocks`: `[B, D, width]`."""
        if x_in.shape != observed.shape or x_in.dim() != 2 or x_in.shape[1] != self.dim:
            raise UserError(f"Transformer expects x_in and observed of shape [B, {self.dim}], "
                             f"got {tuple(x_in.shape)} and {tuple(observed.shape)}")
        tokens = torch.where(observed, x_in, self.num_classes)
        h = self.token(tokens) + self.position + self.cardinality(observed.sum(1))[:, None]
        h = self.drop(h)
        for block in blocks:
            h = block(h, self.bias)
        return h

    def output_layers(self) -> tuple[nn.Module, ...]:
        return (self.head,)

    def matmul_flops(self, batch_size: int) -> int:
        """Matmul FLOPs of one forward pass on `[batch_size, D]` (for MFU)."""
        return matmul_flops(self.blocks, self.head, batch_size, self.dim)
