"""ACE: Arbitrary Conditioning with Energy (Strauss & Oliva 2021) on MAC's lattice.

Every edge p(x_j | x_s) has two estimates. The proposal q is the AO-ARM's own: a residual
MLP over [x_s, mask] giving a mixture of Gaussians and a context vector per variable. The
energy model refines it, p_E(x_j | x_s) = exp(−E(x_j; j, context_j, x_s)) / Z_j, where
Z_j = E_q[exp(−E(y)) / q(y)] is estimated by importance sampling from the proposal:
    log Ẑ_j = logsumexp_k(−E(y_k) − log q(y_k)) − log K,   y_k ~ q(· | x_s).
As in ACE, proposal samples and their log q are constants (stop-gradient); the energy
loss still reaches the proposal network through the context. log Ẑ is biased low for
finite K (Jensen), so energy log-likelihoods are slightly optimistic; more samples
shrink the bias. Published setup (lupalab/ace): proposal 4 blocks × 512, 10 components,
64-d context; energy 4 blocks × 128 over (value, one-hot index, x_o, mask, context),
energies in [0, 30]; 20 importance samples in training, 20000 in evaluation; the energy
term joins the loss after 5000 warm-up steps.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from . import lattice
from .errors import UserError
from .heads import MixtureOfGaussiansHead
from .model import AnyOrderModel
from .nets import build_net
from .nets.resmlp import ResidualBlock

MODELS = ("energy", "proposal")


@runtime_checkable
class ContextNetwork(Protocol):
    """A node network that also gives ACE's energy network a context vector per variable
    (`ResMLP` with `context > 0`): `(x_in [B, D], observed [B, D]) -> ([B, D, P], [B, D, C])`."""

    dim: int
    context: int

    def forward_with_context(self, x_in: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ...


class EnergyNet(nn.Module):
    """E(value; variable j, context_j, x_o, mask) for K candidate values of N edges:
    values `[N, K]`, var `[N]`, context `[N, C]`, x_obs `[N, D]` (zero where unobserved),
    observed `[N, D]` bool -> energies `[N, K]`.

    As in ACE's code, the network reads the edge's conditioning — the one-hot index, the
    context, and (`observed=True`) the observed values and the mask, which its output
    layer reads again — beside the value. `observed=False` reads the index and context
    only (checkpoints written before this option). The first layer is linear, so the
    conditioning's share is computed once per edge and each candidate adds value × its
    weight column; candidates go through the blocks in chunks, so thousands of them per
    edge fit in memory. Energies are softplus outputs clipped to [0, clip] (ACE clips at 30).
    """

    CHUNK = 4096         # (edge, candidate) pairs per pass through the blocks: 2x faster than 65536 on a CPU

    def __init__(self, dim: int, context: int, width: int = 128, depth: int = 4, clip: float = 30.0,
                 observed: bool = True):
        super().__init__()
        self.dim, self.clip, self.observed = dim, clip, observed
        self.input = nn.Linear(1 + dim + context + (2 * dim if observed else 0), width)
        self.blocks = nn.ModuleList(ResidualBlock(width) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.output = nn.Linear(width + (2 * dim if observed else 0), 1)

    def forward(self, values: torch.Tensor, var: torch.Tensor, context: torch.Tensor,
                x_obs: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        dtype, width = context.dtype, self.norm.normalized_shape[0]
        seen = torch.cat([x_obs.to(dtype), observed.to(dtype)], -1) if self.observed else context[:, :0]
        given = torch.cat([F.one_hot(var, self.dim).to(dtype), context, seen], -1)
        base = F.linear(given, self.input.weight[:, 1:], self.input.bias).unsqueeze(1)      # [N, 1, W]
        tail = F.linear(seen, self.output.weight[:, width:], self.output.bias)              # [N, 1]
        step = max(1, self.CHUNK // max(1, len(values)))
        energies = []
        for chunk in values.split(step, dim=1):
            h = base + chunk.unsqueeze(-1).to(dtype) * self.input.weight[:, 0]
            for block in self.blocks:
                h = block(h)
            out = F.linear(F.gelu(self.norm(h)), self.output.weight[:, :width]).squeeze(-1) + tail
            energies.append(F.softplus(out.float()))
        return torch.cat(energies, 1).clamp(max=self.clip)


class ACEModel(AnyOrderModel):
    """An AO-ARM whose edges also carry ACE's energy model.

    `network` must be a `ContextNetwork` (a `ResMLP` with `context > 0`) and `head`
    must be a `MixtureOfGaussiansHead`. `loss` trains both (proposal NLL + energy NLL over
    the same nodes and targets); `log_prob`, `conditional_log_prob` and `sample` take
    `model="energy" | "proposal"` and `num_importance`, and follow the core's paths, so the
    two likelihoods are comparable row by row.

    ACE's settings are the defaults: `num_importance` = 20 proposal draws per log Z in
    training, `eval_importance` = 20000 in every query (its evaluation scripts' number);
    the trainer leaves the energy term out of the loss for its first `energy_warmup` steps
    (`begin_step`; ACE: 5000), so the energy network learns against a proposal that already
    fits; `energy_observed`: the energy network sees x_o and the mask (see `EnergyNet`).
    """

    def __init__(self, network: nn.Module, head: MixtureOfGaussiansHead, strategy: str = "mac",
                 protocol: str = "natural", reweight: bool = True, targets: str = "all",
                 query: str = "card-uniform", num_importance: int = 20, energy_width: int = 128,
                 energy_depth: int = 4, energy_clip: float = 30.0, eval_importance: int = 20000,
                 energy_warmup: int = 5000, energy_observed: bool = True):
        super().__init__(network, head, strategy, protocol, reweight, targets, query)
        if not isinstance(head, MixtureOfGaussiansHead):
            raise UserError(f"ACE is for continuous data: it needs a MixtureOfGaussiansHead proposal, "
                            f"got {type(head).__name__}")
        if not isinstance(network, ContextNetwork) or network.context < 1:
            raise UserError("ACE needs a network with a context vector per variable "
                             "(e.g. ResMLP(..., context=64))")
        for name, value, low in (("num_importance", num_importance, 1), ("eval_importance", eval_importance, 1),
                                 ("energy_warmup", energy_warmup, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UserError(f"{name} must be an integer >= {low}, got {value!r}")
        self.num_importance, self.eval_importance, self.energy_warmup = num_importance, eval_importance, energy_warmup
        self.energy = EnergyNet(network.dim, network.context, energy_width, energy_depth, energy_clip,
                                energy_observed)
        self._which, self._samples, self._generator = "energy", eval_importance, None
        self._energy_weight = 1.0       # 0 during the trainer's warm-up (`begin_step`)

    @classmethod
    def from_config(cls, net_spec: dict, given: dict, head: MixtureOfGaussiansHead, **options) -> "ACEModel":
        """Build from a net config: a ResMLP spec (context defaults to ACE's 64) whose
        `energy_width` / `energy_depth` keys, if present, size the energy network; `options`
        are the other keyword arguments of `ACEModel` (objective, importance samples, …)."""
        spec = dict(net_spec)
        energy = {k: spec.pop(f"energy_{k}") for k in ("width", "depth") if f"energy_{k}" in spec}
        spec.setdefault("context", 64)
        network = build_net(spec, **given)
        return cls(network, head, **{f"energy_{k}": v for k, v in energy.items()}, **options)

    def begin_step(self, step: int) -> None:
        """ACE's warm-up: the proposal trains alone for the first `energy_warmup` steps."""
        self._energy_weight = float(step >= self.energy_warmup)

    def validation_options(self) -> dict:
        """Validation during training estimates log Z with training's sample count, as ACE's does."""
        return {"num_importance": self.num_importance}

    # ---------------------------------------------------------------- the two conditionals
    def params_and_context(self, x: torch.Tensor, observed: torch.Tensor):
        """One pass at node `observed`: head params `[B, D, P]` and context `[B, D, C]`."""
        x_in = torch.where(observed, x, self.head.blank(x))
        return self.network.forward_with_context(x_in, observed)

    def _proposal_draws(self, params: torch.Tensor, count: int, generator=None):
        """`count` proposal samples per row and their log q, both constants: `[N, P]` -> `[N, K]` ×2."""
        with torch.no_grad():
            expanded = params.float().unsqueeze(1).expand(-1, count, -1)
            draws = self.head.sample(expanded.reshape(-1, params.shape[-1]), 1.0, generator)
            draws = draws.view(len(params), count)
            return draws, self.head.log_prob(expanded, draws)

    def _energies(self, values: torch.Tensor, var: torch.Tensor, context: torch.Tensor,
                  x: torch.Tensor, node: torch.Tensor) -> torch.Tensor:
        """E of candidate values `[N, K]` for variables `[N]` with contexts `[N, C]` at the
        edges' rows x `[N, D]` and nodes `[N, D]` -> `[N, K]`."""
        return self.energy(values, var, context, torch.where(node, x, 0.0), node)

    def _terms(self, params, context, value, var, x, node, num_importance, generator=None):
        """Per edge `[N]`: (log q(value), log p_E(value)), with log Z by importance sampling."""
        log_q = self.head.log_prob(params.unsqueeze(1), value.unsqueeze(1)).squeeze(1)
        draws, log_q_draws = self._proposal_draws(params, num_importance, generator)
        energies = self._energies(torch.cat([value.unsqueeze(1), draws], 1), var, context, x, node)
        log_z = torch.logsumexp(-energies[:, 1:] - log_q_draws, dim=1) - math.log(num_importance)
        return log_q, -energies[:, 0] - log_z

    # ---------------------------------------------------------------- training
    def losses(self, x: torch.Tensor, node: torch.Tensor | None = None, generator=None):
        """(proposal NLL, energy NLL), each the core's mean over targets at the same nodes."""
        x = self._check_x(x, generator=generator)
        present = ~torch.isnan(x)
        x = torch.where(present, x, self.head.blank(x))
        self._check_values(x, present)
        if node is None:
            node = self.draw_training(len(x), generator, x.device)
        node = self._check_mask(node, x, "node") & present
        trained = lattice.targets(node, self.targets, self.protocol) & present
        params, context = self.params_and_context(x, node)
        rows, var = trained.nonzero(as_tuple=True)
        log_q, log_e = self._terms(params[rows, var], context[rows, var], x[rows, var], var, x[rows],
                                   node[rows], self.num_importance, generator)
        count = trained.sum(-1).clamp(min=1)

        def mean_nll(log_p):
            per_row = torch.zeros(len(x), device=x.device).index_add(0, rows, -log_p)
            return (per_row / count).mean()

        return mean_nll(log_q), mean_nll(log_e)

    def loss(self, x: torch.Tensor, node: torch.Tensor | None = None, generator=None) -> torch.Tensor:
        """Proposal NLL + energy NLL (nats per variable each), as ACE trains them jointly; the
        energy term weighs 0 during the warm-up (`begin_step`), still in the graph, so every
        parameter gets a gradient (zero) as data-parallel training expects."""
        proposal, energy = self.losses(x, node, generator)
        return proposal + self._energy_weight * energy

    # ---------------------------------------------------------------- queries
    @contextmanager
    def query_options(self, model: str | None = None, num_importance: int | None = None, steps=None, policy=None):
        """Which conditionals the queries inside the block use ("energy", the default, or
        "proposal") and how many importance samples estimate log Z (default: `eval_importance`).
        Step budgets (`policy`) are refused: the K-step walk scores and draws from the
        proposal's parameters, which would bypass the energy model."""
        if steps is not None or policy is not None:
            raise UserError("step budgets (steps / policy) are for AO-ARM models; an ACE model draws "
                            "and scores one variable per pass")
        with self._using(model, num_importance, self._generator):
            yield self

    @contextmanager
    def _using(self, model: str | None, num_importance: int | None, generator):
        """Set the conditionals, sample count and generator of the queries inside; None keeps
        the current setting."""
        model = self._which if model is None else model
        if model not in MODELS:
            raise UserError(f"unknown model {model!r}; expected 'energy' or 'proposal'")
        num_importance = self._samples if num_importance is None else num_importance
        if num_importance < 1:
            raise UserError(f"num_importance must be >= 1, got {num_importance}")
        saved = self._which, self._samples, self._generator
        self._which, self._samples = model, num_importance
        self._generator = self._generator if generator is None else generator
        try:
            yield
        finally:
            self._which, self._samples, self._generator = saved

    def edge_log_prob(self, x, node, var):
        if self._which == "proposal":
            return super().edge_log_prob(x, node, var)
        rows = torch.arange(len(var), device=var.device)
        params, context = self.params_and_context(x, node)
        return self._terms(params[rows, var], context[rows, var], x[rows, var], var, x, node,
                           self._samples, self._generator)[1]

    def edge_sample(self, x, node, var, temperature=1.0, generator=None):
        """Energy: sampling-importance-resampling from K proposal draws (ACE), targeting
        p_E^(1/T); temperature 0 keeps the draw of lowest energy."""
        if self._which == "proposal":
            return super().edge_sample(x, node, var, temperature, generator)
        rows = torch.arange(len(var), device=var.device)
        params, context = self.params_and_context(x, node)
        draws, log_q = self._proposal_draws(params[rows, var], self._samples, generator)
        energies = self._energies(draws, var, context[rows, var], x, node)
        if temperature == 0:
            pick = energies.argmin(-1, keepdim=True)
        else:
            # Shifted by the lowest energy first, so a tiny temperature cannot overflow.
            weights = torch.softmax(-(energies - energies.amin(-1, keepdim=True)) / temperature - log_q, dim=-1)
            pick = torch.multinomial(weights, 1, generator=generator)
        return draws.gather(1, pick).squeeze(1)

    def log_prob(self, x, mask=None, estimator="exact", num_draws=1, generator=None,
                 model: str | None = None, num_importance: int | None = None):
        """The core's log p(x_mask) `[B]` with the energy or the proposal conditionals."""
        with self._using(model, num_importance, generator):
            return super().log_prob(x, mask, estimator, num_draws, generator)

    def conditional_log_prob(self, x, target, given, estimator="exact", num_draws=1,
                             method="chain", generator=None, model: str | None = None,
                             num_importance: int | None = None):
        """The core's log p(x_target | x_given) `[B]` with the energy or the proposal conditionals."""
        with self._using(model, num_importance, generator):
            return super().conditional_log_prob(x, target, given, estimator, num_draws, method, generator)

    def sample(self, x, observed, temperature=1.0, generator=None, model: str | None = None,
               num_importance: int | None = None):
        """The core's sampler; energy conditionals are drawn by importance resampling."""
        with self._using(model, num_importance, generator):
            return super().sample(x, observed, temperature, generator)

    @torch.no_grad()
    def conditional_mean(self, x: torch.Tensor, observed: torch.Tensor, generator=None,
                         model: str | None = None, num_importance: int | None = None) -> torch.Tensor:
        """ACE's imputation: every unobserved x_j replaced by E[x_j | x_observed] in one pass
        (proposal: the mixture mean; energy: the importance-weighted mean of proposal draws)."""
        x = self._check_x(x, generator=generator)
        observed = self._check_mask(observed, x, "observed")
        with self._using(model, num_importance, generator):
            x = torch.where(observed, x, self.head.blank(x))
            params, context = self.params_and_context(x, observed)
            rows, var = (~observed).nonzero(as_tuple=True)
            if self._which == "proposal":
                fill = self.head.mean(params[rows, var])
            else:
                draws, log_q = self._proposal_draws(params[rows, var], self._samples, generator)
                energies = self._energies(draws, var, context[rows, var], x[rows], observed[rows])
                fill = (torch.softmax(-energies - log_q, dim=-1) * draws).sum(-1)
            out = x.clone()
            out[rows, var] = fill.to(x.dtype)
            return out
