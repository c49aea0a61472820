"""Backbones: node networks `net(x_in [B, D], observed [B, D] bool) -> params [B, D, P]` and
path networks `net(x_in [B, D], path [B, D] int64) -> params [B, D, P]` (see `base`)."""

from __future__ import annotations

import torch

from .. import memory
from ..registry import build
from .base import Network, NodeNetwork, PathNetwork

NETS = {
    "transformer": ("anyorder.nets.transformer", "Transformer"),
    "path-transformer": ("anyorder.nets.path_transformer", "PathTransformer"),
    "unet": ("anyorder.nets.unet", "UNet"),
    "resmlp": ("anyorder.nets.resmlp", "ResMLP"),
}


def build_net(spec: dict, **given):
    """`{"kind": name, **size keyword arguments}` plus what the data fixes (dim, …) -> network.
    It is built on the meta device first (no memory) and its parameters' bytes checked against
    the memory there is: a size the allocator would still grant (net.width=10**9 of a table's
    ResMLP, ~24 GB) is otherwise initialised page by page until the kernel's OOM killer ends
    the process, or another one beside it."""
    with torch.device("meta"):
        sized = build(NETS, spec, "net", **given)
    options = {k: v for k, v in spec.items() if k != "kind"}
    memory.check_fits(sum(p.numel() * p.element_size() for p in sized.parameters()),
                      f"net kind {spec.get('kind')!r} with {options}")
    return build(NETS, spec, "net", **given)


__all__ = ["NETS", "Network", "NodeNetwork", "PathNetwork", "build_net"]
