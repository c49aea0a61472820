"""The image backbone: an ARDM-style U-Net (Hoogeboom et al. 2022, used by MAC).

Contract: `UNet(x_in [B, D] int64, observed [B, D] bool) -> params [B, D, P]`, where
D = C·H·W in C,H,W order. The input image has 2C channels: observed levels scaled to
[-1, 1] (0 where unobserved, so unobserved values cannot leak) and the mask itself. The
number of observed variables plays the role of a diffusion timestep: a sinusoidal
embedding and an MLP, added inside every ResBlock. The layout follows DDPM: ResBlocks
(GroupNorm, SiLU, 3x3 conv), single-head self-attention at chosen resolutions and in the
middle, strided-conv downsampling between levels and skip connections into the upward
path. `channel_mult=(1,)` gives ARDM's CIFAR-10 network (no downsampling);
`attention_resolutions` at its one level interleaves attention after every ResBlock, and
`embed_values` adds ARDM's learned embedding of the pixel levels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import NodeNetwork
from ..errors import UserError


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= 32 that divides `channels`."""
    groups = max(g for g in range(1, 33) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def _zero(module: nn.Module) -> nn.Module:
    """Zero-initialise a residual branch's last layer, so every block starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Transformer/DDPM sinusoidal features of a (float) count `[B]` -> `[B, dim]`."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs
    return F.pad(torch.cat([args.cos(), args.sin()], -1), (0, dim % 2))


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.dropout = _norm(c_out), nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.silu(self.norm1(h))) + self.emb(F.silu(emb))[:, :, None, None]
        return self.skip(h) + self.conv2(self.dropout(F.silu(self.norm2(out))))


class Attention(nn.Module):
    """Single-head self-attention over the H·W positions (DDPM's AttnBlock)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, h: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = h.shape
        q, k, v = self.qkv(self.norm(h)).reshape(B, 3, 1, C, H * W).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)                    # [B, 1, H·W, C]
        return h + self.proj(out.transpose(-1, -2).reshape(B, C, H, W))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, h: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(h)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))


class UNet(NodeNetwork):
    """U-Net over `shape = (C, H, W)` images of `num_classes` levels -> `[B, D, out_features]`.

    Level i has `channels * channel_mult[i]` channels and `blocks_per_level` ResBlocks on
    the way down (one more on the way up); H and W halve between levels, so both must be
    divisible by 2**(len(channel_mult) - 1). `attention_resolutions` lists feature-map
    heights (e.g. 16 for the 16x16 level of a 32x32 image) that get attention after each
    ResBlock. Output channel c·P + p of the last conv is parameter p of channel c.

    embed_values (ARDM's input layer): the first conv of (levels, mask) gives 3/4 of the
    first level's channels, and the last quarter is a learned embedding of each channel's
    level (a quarter-width vector per level and channel, mixed across the C channels by a
    linear layer). Unobserved variables are embedded as level 0, so only the mask tells them
    apart from an observed 0.
    """

    def __init__(self, dim: int, num_classes: int, out_features: int, shape, channels: int = 64,
                 channel_mult=(1, 2), blocks_per_level: int = 2, attention_resolutions=(),
                 dropout: float = 0.0, embed_values: bool = False):
        super().__init__()
        shape, channel_mult = tuple(int(s) for s in shape), tuple(int(m) for m in channel_mult)
        attention_resolutions = tuple(int(r) for r in attention_resolutions)
        self.config = dict(dim=dim, num_classes=num_classes, out_features=out_features, shape=shape,
                           channels=channels, channel_mult=channel_mult,
                           blocks_per_level=blocks_per_level,
                           attention_resolutions=attention_resolutions, dropout=dropout,
                           embed_values=bool(embed_values))
        _check_config(**self.config)
        C, H, W = shape
        self.dim, self.shape, self.num_classes, self.out_features = dim, shape, num_classes, out_features
        emb_dim = 4 * channels
        self.embed = nn.Sequential(nn.Linear(channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        first = channels * channel_mult[0]
        quarter = first // 4 if embed_values else 0
        self.conv_in = nn.Conv2d(2 * C, first - quarter, 3, padding=1)
        if embed_values:
            self.value_embedding = nn.Embedding(num_classes, quarter)
            self.value_mix = nn.Linear(C * quarter, quarter)

        c, res, last = first, H, len(channel_mult) - 1
        skips = [c]
        self.down = nn.ModuleList()
        for level, mult in enumerate(channel_mult):
            for _ in range(blocks_per_level):
                step = [ResBlock(c, channels * mult, emb_dim, dropout)]
                c = channels * mult
                if res in attention_resolutions:
                    step.append(Attention(c))
                self.down.append(nn.ModuleList(step))
                skips.append(c)
            if level < last:
                self.down.append(nn.ModuleList([Downsample(c)]))
                skips.append(c)
                res //= 2
        self.middle = nn.ModuleList([ResBlock(c, c, emb_dim, dropout), Attention(c),
                                     ResBlock(c, c, emb_dim, dropout)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for block in range(blocks_per_level + 1):
                step = [ResBlock(c + skips.pop(), channels * mult, emb_dim, dropout)]
                c = channels * mult
                if res in attention_resolutions:
                    step.append(Attention(c))
                if level > 0 and block == blocks_per_level:
                    step.append(Upsample(c))
                    res *= 2
                self.up.append(nn.ModuleList(step))
        self.norm_out = _norm(c)
        self.conv_out = _zero(nn.Conv2d(c, C * out_features, 3, padding=1))

    def forward(self, x_in: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """`x_in [B, D]` int64 levels, `observed [B, D]` bool -> params `[B, D, out_features]`."""
        B, (C, H, W) = x_in.shape[0], self.shape
        dtype = self.conv_in.weight.dtype
        values = x_in.to(dtype) * (2.0 / (self.num_classes - 1)) - 1.0
        values = torch.where(observed, values, torch.zeros((), dtype=dtype, device=values.device))
        h = torch.cat([values.view(B, C, H, W), observed.to(dtype).view(B, C, H, W)], 1)
        emb = self.embed(sinusoidal_embedding(observed.sum(-1), self.config["channels"]).to(dtype))

        h = self.conv_in(h)
        if self.config["embed_values"]:
            seen = torch.where(observed, x_in, 0).view(B, C, H, W).permute(0, 2, 3, 1)
            levels = self.value_embedding(seen)                                       # [B, H, W, C, q]
            levels = self.value_mix(levels.flatten(-2)).to(h.dtype).permute(0, 3, 1, 2)  # [B, q, H, W]
            h = torch.cat([h, levels], 1)
        skips = [h]
        for step in self.down:
            for layer in step:
                h = layer(h, emb)
            skips.append(h)
        for layer in self.middle:
            h = layer(h, emb)
        for step in self.up:
            h = torch.cat([h, skips.pop()], 1)
            for layer in step:
                h = layer(h, emb)
        h = self.conv_out(F.silu(self.norm_out(h)))                      # [B, C·P, H, W]
        P = self.out_features
        return h.view(B, C, P, H, W).permute(0, 1, 3, 4, 2).reshape(B, C * H * W, P)

    def matmul_flops(self, batch_size: int) -> int:
        """Multiply-add FLOPs (2·m·n·k) of one forward pass on `batch_size` images: every
        convolution, linear layer and attention product, measured from the shapes seen by
        a shape-only (meta-device) copy of this network."""
        with torch.device("meta"):
            twin = UNet(**self.config)
            x = torch.zeros(batch_size, self.config["dim"], dtype=torch.long)
            observed = torch.ones(batch_size, self.config["dim"], dtype=torch.bool)
        flops = []

        def count(module, inputs, out):
            if isinstance(module, nn.Conv2d):
                k = module.in_channels // module.groups * math.prod(module.kernel_size)
                flops.append(2 * out.numel() * k)
            elif isinstance(module, nn.Linear):
                flops.append(2 * out.numel() * module.in_features)
            else:                                       # Attention: Q·Kᵀ and A·V
                B, C, H, W = inputs[0].shape
                flops.append(2 * 2 * B * (H * W) ** 2 * C)

        for module in twin.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear, Attention)):
                module.register_forward_hook(count)
        with torch.no_grad():
            twin(x, observed)
        return int(sum(flops))


def _check_config(dim, num_classes, out_features, shape, channels, channel_mult, blocks_per_level,
                  attention_resolutions, dropout, embed_values) -> None:
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"UNet shape must be (C, H, W) with positive sizes, got {shape}")
    C, H, W = shape
    if dim != C * H * W:
        raise UserError(f"UNet dim must equal C·H·W = {C * H * W} for shape {shape}, got {dim}")
    if num_classes < 2 or out_features < 1 or channels < 1 or blocks_per_level < 1:
        raise UserError("UNet needs num_classes >= 2 and out_features, channels, "
                         f"blocks_per_level >= 1, got {num_classes}, {out_features}, {channels}, "
                         f"{blocks_per_level}")
    if not channel_mult or min(channel_mult) < 1:
        raise UserError(f"UNet channel_mult must be non-empty positive integers, got {channel_mult}")
    levels, h, w = 1, H, W
    while h % 2 == 0 and w % 2 == 0:
        levels, h, w = levels + 1, h // 2, w // 2
    if len(channel_mult) > levels:
        raise UserError(f"UNet: {H}x{W} images halve evenly only {levels - 1} time(s), so "
                         f"channel_mult may have at most {levels} entries, got {channel_mult}")
    heights = [H >> i for i in range(len(channel_mult))]
    unknown = [r for r in attention_resolutions if r not in heights]
    if unknown:
        raise UserError(f"UNet attention_resolutions {unknown} are not feature-map heights of "
                         f"this network; choose from {heights}")
    if not 0 <= dropout < 1:
        raise UserError(f"UNet dropout must lie in [0, 1), got {dropout}")
    if embed_values and (channels * channel_mult[0]) % 4:
        raise UserError(f"UNet embed_values needs the first level's channels ({channels * channel_mult[0]}) "
                         f"divisible by 4")
