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
    """`network(x_in [B, D], path [B, D] int64, step=None) -> params [B, D, P]`, plus a
    key/value cache.

    A path (see `lattice.paths`) marks each variable −1 = given (in o), t = the t-th target
    u_t (t = 0, 1, …), D = off the path; D + 1 + t = the t-th target of a second path
    after the same o, packed into the row (training only). `step` `[B, D]` int64 gives each
    target the step k that draws it (non-decreasing along the path, see
    `lattice.path_steps`); None = one target per step. The output at u_t parameterises
    p(x_{u_t} | x_o, x_{u_s} for every s whose step is before u_t's): with one target per
    step the exact path's p(x_{u_t} | x_o, x_{u<t}), with one step p(x_{u_t} | x_o) for
    every t at once; it is zero off the targets. A prediction never sees a value of its own
    step. `step` `[B, S, D]` asks S step patterns of one path at once -> `[B, S, D, P]`.

    A walk uses the cache: `begin` encodes o, `predict` gives the parameters of a block of
    variables from what the cache holds, `extend` appends the block's values once they are
    known. Walking a path's steps this way equals `forward` with those steps.
    """

    answers: ClassVar[str] = "path"
    dim: int

    def forward(self, x_in: torch.Tensor, path: torch.Tensor, step: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def begin(self, x_in: torch.Tensor, given: torch.Tensor):
        """Encode the given set `[B, D]` bool of x_in `[B, D]`; returns a cache."""
        raise NotImplementedError

    def predict(self, cache, var: torch.Tensor, seen: torch.Tensor | None = None) -> torch.Tensor:
        """Parameters `[B, m, P]` of x_var for variables `var [B, m]` from o and the targets the
        cache holds (`seen [B, m]`: from o and the first seen[b, i] of them only)."""
        raise NotImplementedError

    def extend(self, cache, var: torch.Tensor, value: torch.Tensor, valid: torch.Tensor,
               then: torch.Tensor | None = None) -> torch.Tensor | None:
        """Append targets `var [B, m]` with values `value [B, m]` (in path order) to the cache;
        slots where `valid [B, m]` is False are padding, never seen. With `then [B, q]`,
        return `predict(cache, then)` after the append (a network may fuse the two)."""
        raise NotImplementedError
