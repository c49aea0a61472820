"""The two backbone contracts an AnyOrderModel can hold, declared once.

A *node network* answers one lattice node per pass: every edge p(x_j | x_s) out of s.
A *path network* answers one path per pass: every edge p(x_{u_t} | x_o, x_{u<t}) along a
given set o followed by targets u_1..u_m. `answers` names the contract, so the model picks
how to walk the lattice from the class, never by probing attributes; both declare their
output layers (`Network.output_layers`) for the optimiser.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn


class Network(nn.Module):
    """What every backbone declares beside its contract: which layers produce its output."""

    def output_layers(self) -> tuple[nn.Module, ...]:
        """The layers that map hidden features to the head's parameters (a final projection).
        Muon (`optim.kind: muon`) updates every other linear layer of the network and leaves
        these to AdamW, as it does embeddings; none by default."""
        return ()


class NodeNetwork(Network):
    """`network(x_in [B, D], observed [B, D] bool) -> params [B, D, P]`.

    x_in holds the observed values and a blank elsewhere; the output at an unobserved j
    parameterises p(x_j | x_observed) and must not depend on unobserved values.
    """

    answers: ClassVar[str] = "node"
    dim: int

    def forward(self, x_in: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_at(self, x_in: torch.Tensor, observed: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """The output at one variable per row, `[B, D]`, `[B, D]`, `var [B]` -> `[B, P]`: what a
        walk along a path needs from each pass (one edge per row). Equal to
        `forward(x_in, observed)[arange(B), var]`, which is this default; a network that can
        skip work at the other positions (a Transformer's last block and head) overrides it."""
        return self(x_in, observed)[torch.arange(len(var), device=var.device), var]


class PathNetwork(Network):
    """`network(x_in [B, D], path [B, D] int64) -> params [B, D, P]`, plus a key/value cache.

    A path (see `lattice.paths`) marks each variable −1 = given (in o), t = the t-th target
    u_t (t = 0, 1, …), D = off the path; D + 1 + t = the t-th target of a second path
    after the same o, packed into the row (training only). The output at u_t parameterises
    p(x_{u_t} | x_o, x_{u<t}); it is zero elsewhere. Given variables see each other
    bidirectionally, targets see o and earlier targets of their own path, variables off
    the path are absent.

    Sampling walks a path one target at a time: `begin` encodes o once, then each
    `extend` appends one target and returns its parameters; the result equals the
    one-pass `forward` on the path walked so far.
    """

    answers: ClassVar[str] = "path"
    dim: int

    def forward(self, x_in: torch.Tensor, path: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def begin(self, x_in: torch.Tensor, given: torch.Tensor):
        """Encode the given set `[B, D]` bool of x_in `[B, D]`; returns a cache for `extend`."""
        raise NotImplementedError

    def extend(self, cache, var: torch.Tensor, value: torch.Tensor | None) -> torch.Tensor:
        """Append target `var [B]` to the path in `cache`; `value [B]` is the value of the
        previous target (None on the first step). Returns the parameters of x_var `[B, P]`."""
        raise NotImplementedError
