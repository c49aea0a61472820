"""Backbones, all with the contract `net(x_in [B, D], observed [B, D] bool) -> params [B, D, P]`."""

from __future__ import annotations

from ..registry import build

NETS = {
    "transformer": ("anyorder.nets.transformer", "Transformer"),
    "unet": ("anyorder.nets.unet", "UNet"),
    "resmlp": ("anyorder.nets.resmlp", "ResMLP"),
}


def build_net(spec: dict, **given):
    """`{"kind": name, **size keyword arguments}` plus what the data fixes (dim, …) -> network."""
    return build(NETS, spec, "net", **given)
