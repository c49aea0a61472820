"""Backbones: node networks `net(x_in [B, D], observed [B, D] bool) -> params [B, D, P]` and
path networks `net(x_in [B, D], path [B, D] int64) -> params [B, D, P]` (see `base`)."""

from __future__ import annotations

from ..registry import build
from .base import Network, NodeNetwork, PathNetwork

NETS = {
    "transformer": ("anyorder.nets.transformer", "Transformer"),
    "path-transformer": ("anyorder.nets.path_transformer", "PathTransformer"),
    "unet": ("anyorder.nets.unet", "UNet"),
    "resmlp": ("anyorder.nets.resmlp", "ResMLP"),
}


def build_net(spec: dict, **given):
    """`{"kind": name, **size keyword arguments}` plus what the data fixes (dim, …) -> network."""
    return build(NETS, spec, "net", **given)


__all__ = ["NETS", "Network", "NodeNetwork", "PathNetwork", "build_net"]
