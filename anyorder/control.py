"""Conditional policies: one AO-ARM over (state, action) rows, with the state always given.

A demonstration row is x = (s_1 … s_S, a_1 … a_A), D = S + A, a table whose first S columns
are the state (load it with `anyorder.data.tables.load_table`; rows are then standardised).
The state is observed at every training node and in every query, so the model lives on the
action sub-lattice and one network answers
  - p(a | s): full autonomy, sampling every action dimension given the state, and
  - p(a_u | s, a_o): shared autonomy, where an operator sets the dimensions o and the
    assistant fills the rest u given the state and the operator's values (the MAC paper's
    robotics experiment).
The behaviour-cloning baselines share the backbone and read the state alone:
`RegressionPolicy` (MSE) predicts E[a | s], which lands between the modes of a multi-modal
demonstrator; `MixtureDensityPolicy` is a mixture over the joint action; `DiscretePolicy`
predicts per-dimension bins, independent given the state; `DiffusionPolicy` is a DDPM over
the joint action that conditions on given dimensions by inpainting.

Policies take and return values in the table's own units (`act`, `log_prob`); `loss` reads
standardised rows as the table pipeline gives them. No environment code lives here.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Protocol, runtime_checkable

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from . import lattice
from .data.base import Dataset
from .errors import UserError, check_count, is_integer
from .heads import MixtureOfGaussiansHead, check_temperature
from .model import AnyOrderModel
from .nets.resmlp import ResMLP
from .sampling import draw
from .train import lr_factor, train_step


def policy_nodes(batch: int, state_dim: int, action_dim: int, protocol: str = "natural",
                 reweight: bool = True, generator=None, device=None) -> torch.Tensor:
    """MAC's inpainting nodes on the action sub-lattice, the state always in: `[B, S + A]` bool.

    The operator's dimensions o_a are uniform given |o_a| ~ U{0..A-1}; the node adds the
    first k ~ U{0..A-|o_a|-1} of the other action dimensions in the order `protocol` gives
    them after the state and o_a (the order in which `ConditionalPolicy.act` fills them).
    With `reweight`, nodes are drawn exactly from P'(s) ∝ P(s)(|s_a| + 1), |s_a| the number
    of action dimensions in the node.
    """
    if state_dim < 0 or action_dim < 1 or batch < 0:
        raise UserError(f"need batch >= 0, state_dim >= 0 and action_dim >= 1, got "
                         f"{batch}, {state_dim}, {action_dim}")
    cell = draw(lattice.node_cdf(action_dim, "mac-inpaint", "card-uniform", reweight), batch, generator, device)
    given, steps = cell // action_dim, cell % action_dim
    state = torch.ones(batch, state_dim, dtype=torch.bool, device=device)
    base = torch.cat([state, lattice.uniform_subsets(given, action_dim, generator)], dim=-1)
    order = lattice.ranks(base, protocol, generator)
    return order < (state_dim + given + steps).unsqueeze(-1)


@runtime_checkable
class Policy(Protocol):
    """Anything that acts: `act(state [B, S], action [B, A] | None, given [B, A] bool | None)
    -> action [B, A]`, keeping the `given` dimensions of `action` and choosing the rest."""

    def act(self, state: torch.Tensor, action: torch.Tensor | None = None,
            given: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        ...


class TablePolicy(nn.Module):
    """What conditional policies share: the row layout (state first), standardisation with
    the table's train statistics, and input checks. Subclasses give `loss` and `act`."""

    def __init__(self, state_dim: int, action_dim: int, mean=None, std=None):
        super().__init__()
        if state_dim < 1 or action_dim < 1:
            raise UserError(f"state_dim and action_dim must be >= 1, got {state_dim}, {action_dim}")
        self.state_dim, self.action_dim = state_dim, action_dim
        dim = state_dim + action_dim
        mean = torch.zeros(dim) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        std = torch.ones(dim) if std is None else torch.as_tensor(std, dtype=torch.float32)
        if mean.shape != (dim,) or std.shape != (dim,) or not (std > 0).all():
            raise UserError(f"mean and std must be [{dim}] (state then action columns) with std > 0, "
                             f"got {tuple(mean.shape)} and {tuple(std.shape)}")
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    @classmethod
    def for_table(cls, data: Dataset, state_dim: int, **options):
        """A policy for a table Dataset whose first `state_dim` columns are the state."""
        if data.kind != "table" or data.num_classes is not None:
            raise UserError(f"a policy needs a continuous table Dataset, got kind {data.kind!r}")
        categorical = [c for c, found in zip(data.meta["columns"], data.meta.get("levels") or []) if found]
        if categorical:
            raise UserError(f"a policy models numeric columns; {categorical} were loaded as categorical: "
                            f"load the table with numeric={categorical}")
        if not is_integer(state_dim) or not 1 <= state_dim < data.dim:
            raise UserError(f"state_dim must lie in 1..{data.dim - 1} (the table has {data.dim} "
                             f"columns: state first, then action), got {state_dim}")
        return cls(state_dim, data.dim - state_dim, mean=data.meta.get("mean"), std=data.meta.get("std"),
                   **options)

    @property
    def dim(self) -> int:
        return self.state_dim + self.action_dim

    def inputs(self, state, action=None, given=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Table units -> (standardised rows `[B, D]`, observed `[B, D]`: state and `given`).
        Action values outside `given` are never read (they may be NaN); action None = none given."""
        state = self._check(state, self.state_dim, "state")
        given = self.action_mask(given, len(state), "given")
        if action is None:
            if given.any():
                raise UserError("given marks action dimensions as set, but no action was passed")
            action = torch.zeros(len(state), self.action_dim, device=state.device)
        action = self._check(action, self.action_dim, "action", len(state))
        if not torch.isfinite(action[given]).all():
            raise UserError("action has non-finite values in given dimensions")
        x = (torch.cat([state, action], dim=-1) - self.mean) / self.std
        return x, torch.cat([torch.ones_like(state, dtype=torch.bool), given], dim=-1)

    def action_mask(self, mask, rows: int, name: str) -> torch.Tensor:
        """Check a `[B, A]` bool mask over the action dimensions; None -> all False."""
        if mask is None:
            return torch.zeros(rows, self.action_dim, dtype=torch.bool, device=self.mean.device)
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != (rows, self.action_dim):
            what = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise UserError(f"{name} must be a torch.bool tensor [{rows}, {self.action_dim}] over the "
                             f"action dimensions, got {what}")
        return mask.to(self.mean.device)

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised rows `[B, D]` -> their actions in table units `[B, A]`."""
        return (x * self.std + self.mean)[:, self.state_dim:]

    def complete(self, x: torch.Tensor, drawn: torch.Tensor, action, observed: torch.Tensor) -> torch.Tensor:
        """Standardised actions `drawn` `[B, A]` -> table units, with the caller's `action` values
        copied exactly where `observed` marks them (no round trip through the standardisation)."""
        filled = self.outputs(torch.cat([x[:, :self.state_dim], drawn], dim=-1))
        return filled if action is None else torch.where(observed[:, self.state_dim:], action.to(filled), filled)

    def _check(self, values, width: int, name: str, rows: int | None = None) -> torch.Tensor:
        if not isinstance(values, torch.Tensor) or values.dim() != 2 or values.shape[1] != width \
                or (rows is not None and len(values) != rows):
            shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            raise UserError(f"{name} must be a tensor [{'batch' if rows is None else rows}, {width}], got {shape}")
        values = values.to(self.mean.device, torch.float32)
        if name == "state" and not torch.isfinite(values).all():
            raise UserError("state has non-finite values; the state is always observed")
        return values

    def loss(self, rows: torch.Tensor, generator=None) -> torch.Tensor:
        """Training loss on standardised rows `[B, D]` (what `fit` minimises)."""
        raise NotImplementedError

    def act(self, state, action=None, given=None, generator=None) -> torch.Tensor:
        """The `Policy` contract, in the table's units."""
        raise NotImplementedError


class ConditionalPolicy(TablePolicy):
    """p(a_u | s, a_o) for every split of the action dimensions, from one AO-ARM.

    Backbone: a residual MLP over [x_o, mask] (the paper used width 2048, depth 8); head: a
    mixture of `components` Gaussians per action dimension. Training nodes: `policy_nodes`.
    Actions are drawn one dimension per pass in `protocol` order, batched over states.
    `min_log_scale` floors each component's log-scale (standardised units): for actions that
    take a few exact values (on/off thrusters) a higher floor, e.g. -2, keeps a component
    from collapsing onto a point, where the loss would reward sharpening over learning the
    mixture weights that carry the state dependence.
    """

    def __init__(self, state_dim: int, action_dim: int, mean=None, std=None, width: int = 256,
                 depth: int = 4, components: int = 10, protocol: str = "natural", reweight: bool = True,
                 min_log_scale: float = -7.0):
        super().__init__(state_dim, action_dim, mean, std)
        head = MixtureOfGaussiansHead(components, min_log_scale=min_log_scale)
        network = ResMLP(self.dim, None, head.params_per_variable, width, depth)
        self.model = AnyOrderModel(network, head, strategy="mac-inpaint", protocol=protocol, reweight=reweight)

    def loss(self, rows: torch.Tensor, generator=None) -> torch.Tensor:
        """Mean NLL of the action targets at `policy_nodes`, nats per variable; rows standardised `[B, D]`."""
        node = policy_nodes(len(rows), self.state_dim, self.action_dim, self.model.protocol,
                            self.model.reweight, generator, rows.device)
        return self.model.loss(rows, node)

    @torch.no_grad()
    def act(self, state, action=None, given=None, generator=None, temperature: float = 1.0) -> torch.Tensor:
        """Draw the dimensions not `given` from p(a_rest | s, a_given): `[B, A]`, table units."""
        x, observed = self.inputs(state, action, given)
        filled = self.outputs(self.model.sample(x, observed, temperature, generator))
        return filled if action is None else torch.where(observed[:, self.state_dim:], action.to(filled), filled)

    def log_prob(self, state, action, given=None, target=None) -> torch.Tensor:
        """log p(a_target | s, a_given) per row `[B]`, a density in the table's units (the
        standardisation's Jacobian included). given None: none; target None: all the rest,
        so `log_prob(s, a)` is log p(a | s). The target is visited in protocol order from the
        node (s, a_given): when it is all the rest, or its first dimensions in that order,
        this is exactly the density of `act`'s draws of those dimensions."""
        x, observed = self.inputs(state, action, given)
        target = ~observed[:, self.state_dim:] if target is None else self.action_mask(target, len(x), "target")
        target = torch.cat([torch.zeros_like(observed[:, :self.state_dim]), target], dim=-1)
        if not torch.isfinite(x[target]).all():
            raise UserError("action must be finite in every target dimension")
        return self.model.conditional_log_prob(x, target, observed) - (target * self.std.log()).sum(-1)


class StatePolicy(TablePolicy):
    """The behaviour-cloning family: one residual MLP (the same backbone as `ConditionalPolicy`)
    reads the state alone and gives `out_features` params per action dimension. Subclasses
    turn those params into a point, a joint mixture or per-dimension bins."""

    def __init__(self, state_dim: int, action_dim: int, mean, std, out_features: int, width: int, depth: int):
        super().__init__(state_dim, action_dim, mean, std)
        self.network = ResMLP(self.dim, None, out_features, width, depth)

    def params(self, rows: torch.Tensor) -> torch.Tensor:
        """Standardised rows `[B, D]` (only the state is read) -> params `[B, A, out_features]`."""
        observed = torch.zeros_like(rows, dtype=torch.bool)
        observed[:, :self.state_dim] = True
        return self.network(torch.where(observed, torch.nan_to_num(rows), 0.0), observed)[:, self.state_dim:]



class RegressionPolicy(StatePolicy):
    """Behaviour cloning: an MSE regressor a ≈ f(s), one value per action dimension.
    Unimodal by construction: it predicts E[a | s]. `given` dimensions are copied through;
    the rest are predicted from the state alone."""

    def __init__(self, state_dim: int, action_dim: int, mean=None, std=None, width: int = 256, depth: int = 4):
        super().__init__(state_dim, action_dim, mean, std, 1, width, depth)

    def loss(self, rows: torch.Tensor, generator=None) -> torch.Tensor:
        """Mean squared error over the present action cells of standardised rows `[B, D]`."""
        target = rows[:, self.state_dim:]
        present = ~torch.isnan(target)
        error = torch.where(present, self.params(rows)[..., 0] - target, 0.0)
        return error.square().sum() / present.sum().clamp(min=1)

    @torch.no_grad()
    def act(self, state, action=None, given=None, generator=None) -> torch.Tensor:
        """E[a | s] for the dimensions not `given` (deterministic: `generator` is unused)."""
        x, observed = self.inputs(state, action, given)
        return self.complete(x, self.params(x)[..., 0], action, observed)


class MixtureDensityPolicy(StatePolicy):
    """Mixture-density behaviour cloning (Bishop's MDN): p(a | s) = Σ_k π_k(s) Π_j N(a_j; μ_kj, σ_kj),
    one mixture over the JOINT action, so a component moves every dimension together.
    Component scales are soft-clamped as in `MixtureOfGaussiansHead`. Given some dimensions,
    `act` draws the rest from the mixture's exact conditional (the weights reweighted by the
    given values' densities); `SharedAutonomy(conditioned=False)` ignores them instead."""

    def __init__(self, state_dim: int, action_dim: int, mean=None, std=None, width: int = 256,
                 depth: int = 4, components: int = 10, min_log_scale: float = -7.0):
        head = MixtureOfGaussiansHead(components, min_log_scale=min_log_scale)
        super().__init__(state_dim, action_dim, mean, std, head.params_per_variable, width, depth)
        self.head = head

    def mixture(self, rows: torch.Tensor):
        """Standardised rows `[B, D]` -> joint log-weights `[B, K]`, means and log-scales `[B, A, K]`.
        The joint logit of component k is the sum of its per-dimension logits."""
        log_w, means, log_scales = self.head.mixture(self.params(rows))
        return torch.log_softmax(log_w.sum(1), -1), means, log_scales

    def component_log_probs(self, rows: torch.Tensor, dims: torch.Tensor):
        """(log-weights `[B, K]`, log Π_{j in dims} N(a_j; μ_kj, σ_kj) `[B, K]`) for standardised rows
        `[B, D]` and a `[B, A]` bool mask of the action dimensions to score."""
        log_w, means, log_scales = self.mixture(rows)
        z = (torch.nan_to_num(rows[:, self.state_dim:]).unsqueeze(-1) - means) * torch.exp(-log_scales)
        comp = -0.5 * z.square() - log_scales - 0.5 * math.log(2 * math.pi)
        return log_w, (comp * dims.unsqueeze(-1)).sum(1)

    def loss(self, rows: torch.Tensor, generator=None) -> torch.Tensor:
        """Mean NLL of the joint action, nats per action dimension; rows standardised `[B, D]`."""
        log_w, comp = self.component_log_probs(rows, torch.ones_like(rows[:, self.state_dim:], dtype=torch.bool))
        return -torch.logsumexp(log_w + comp, -1).mean() / self.action_dim

    @torch.no_grad()
    def act(self, state, action=None, given=None, generator=None, temperature: float = 1.0) -> torch.Tensor:
        """Draw the dimensions not `given` from p(a_rest | s, a_given): `[B, A]`, table units.
        `temperature` scales the drawn component's noise (as `ConditionalPolicy.act`'s does:
        the component, hence the mode, is drawn as it is; 0 gives its mean)."""
        check_temperature(temperature)
        x, observed = self.inputs(state, action, given)
        log_w, comp = self.component_log_probs(x, observed[:, self.state_dim:])
        _, means, log_scales = self.mixture(x)
        k = torch.multinomial(torch.softmax(log_w + comp, -1), 1, generator=generator)
        k = k.unsqueeze(1).expand(-1, self.action_dim, 1)
        mu, log_s = means.gather(-1, k)[..., 0], log_scales.gather(-1, k)[..., 0]
        noise = torch.randn(mu.shape, generator=generator, device=mu.device)
        return self.complete(x, mu + temperature * log_s.exp() * noise, action, observed)

    def log_prob(self, state, action, given=None) -> torch.Tensor:
        """log p(a_rest | s, a_given) per row `[B]`, a density in the table's units (exact: a
        ratio of two mixture likelihoods). given None: log p(a | s)."""
        x, observed = self.inputs(state, action, given)
        given = observed[:, self.state_dim:]
        if not torch.isfinite(x).all():
            raise UserError("action must be finite in every dimension")
        log_w, joint = self.component_log_probs(x, torch.ones_like(given))
        _, known = self.component_log_probs(x, given)
        jacobian = (~given * self.std[self.state_dim:].log()).sum(-1)
        return torch.logsumexp(log_w + joint, -1) - torch.logsumexp(log_w + known, -1) - jacobian


class DiscretePolicy(StatePolicy):
    """Discretised behaviour cloning: each action dimension's standardised range [-bound, bound]
    is cut into `bins` equal bins and a softmax over them is predicted from the state, the
    dimensions independent given the state (per-dimension tokens, as RT-1 does). A draw picks
    a bin, then a point uniformly inside it, so `log_prob` is a density; values beyond the
    range fall into the end bins. `given` dimensions are copied through, never read."""

    def __init__(self, state_dim: int, action_dim: int, mean=None, std=None, width: int = 256,
                 depth: int = 4, bins: int = 21, bound: float = 3.0):
        if not is_integer(bins) or bins < 2 or not bound > 0:
            raise UserError(f"need bins >= 2 and bound > 0, got {bins}, {bound}")
        super().__init__(state_dim, action_dim, mean, std, bins, width, depth)
        self.bins, self.bound = bins, bound

    def bin_of(self, values: torch.Tensor) -> torch.Tensor:
        """Standardised values -> their bin ids (int64), the ends extended to ±infinity."""
        scaled = (values + self.bound) / (2 * self.bound) * self.bins
        return scaled.floor().clamp(0, self.bins - 1).long()

    def loss(self, rows: torch.Tensor, generator=None) -> torch.Tensor:
        """Mean cross-entropy of the action bins, nats per dimension; rows standardised `[B, D]`."""
        logits = self.params(rows)
        return F.cross_entropy(logits.flatten(0, 1), self.bin_of(rows[:, self.state_dim:]).flatten())

    @torch.no_grad()
    def act(self, state, action=None, given=None, generator=None) -> torch.Tensor:
        """Draw a bin per dimension not `given`, then a uniform point in it: `[B, A]`, table units."""
        x, observed = self.inputs(state, action, given)
        probs = torch.softmax(self.params(x), -1)
        bins = torch.multinomial(probs.flatten(0, 1), 1, generator=generator).view(len(x), self.action_dim)
        inside = torch.rand(bins.shape, generator=generator, device=bins.device)
        drawn = (bins + inside) * (2 * self.bound / self.bins) - self.bound
        return self.complete(x, drawn, action, observed)

    def log_prob(self, state, action) -> torch.Tensor:
        """log p(a | s) per row `[B]` in the table's units: bin masses over bin widths, for
        actions inside the range (the end bins' mass is not spread beyond it)."""
        x, _ = self.inputs(state, action, torch.ones(len(state), self.action_dim, dtype=torch.bool))
        log_p = torch.log_softmax(self.params(x), -1).gather(-1, self.bin_of(x[:, self.state_dim:]).unsqueeze(-1))
        width = math.log(2 * self.bound / self.bins)
        return (log_p[..., 0] - width - self.std[self.state_dim:].log()).sum(-1)


class DiffusionPolicy(TablePolicy):
    """A diffusion policy (DDPM over the joint action given the state, as Chi et al.'s
    Diffusion Policy): a residual MLP of the same backbone reads [state, noisy action, t/T]
    and predicts the noise; `steps` = T, a cosine noise schedule (Nichol & Dhariwal). A draw
    runs the T ancestral steps from N(0, I). Given some action dimensions, `act` conditions
    by inpainting (RePaint without resampling): after every step the given dimensions are
    replaced by the given values noised to that step's level, and by the values themselves at
    the end — an approximation of p(a_rest | s, a_given), not an exact conditional."""

    def __init__(self, state_dim: int, action_dim: int, mean=None, std=None, width: int = 256,
                 depth: int = 4, steps: int = 50):
        super().__init__(state_dim, action_dim, mean, std)
        self.steps = check_count(steps, "steps")
        self.network = ResMLP(self.dim + 1, None, 1, width, depth)
        t = torch.arange(steps + 1, dtype=torch.float64) / steps
        alpha_bar = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        alpha_bar = alpha_bar / alpha_bar[0]
        beta = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
        alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - beta, 0)])
        self.register_buffer("alpha_bar", alpha_bar.float())     # [T + 1], alpha_bar[0] = 1
        self.register_buffer("beta", torch.cat([torch.zeros(1), beta.float()]))   # [T + 1], beta[0] unused

    def noise(self, state: torch.Tensor, noisy: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Predicted noise `[B, A]` for standardised states `[B, S]`, noisy actions `[B, A]`, steps `[B]`."""
        x = torch.cat([state, noisy, (t.float() / self.steps).unsqueeze(-1)], dim=-1)
        return self.network(x, torch.ones_like(x, dtype=torch.bool))[:, self.state_dim:self.dim, 0]

    def loss(self, rows: torch.Tensor, generator=None) -> torch.Tensor:
        """The noise-prediction MSE (DDPM's simple loss) per action dimension; rows standardised `[B, D]`."""
        state, action = rows[:, :self.state_dim], rows[:, self.state_dim:]
        t = torch.randint(1, self.steps + 1, (len(rows),), generator=generator).to(rows.device)
        eps = torch.randn(action.shape, generator=generator).to(rows.device)
        a_bar = self.alpha_bar[t].unsqueeze(-1)
        return (self.noise(state, a_bar.sqrt() * action + (1 - a_bar).sqrt() * eps, t) - eps).square().mean()

    @torch.no_grad()
    def act(self, state, action=None, given=None, generator=None) -> torch.Tensor:
        """Draw the dimensions not `given` by T ancestral steps, inpainting the given ones: `[B, A]`."""
        x, observed = self.inputs(state, action, given)
        s, known, mask = x[:, :self.state_dim], x[:, self.state_dim:], observed[:, self.state_dim:]
        randn = (lambda: torch.randn(known.shape, generator=generator, device=known.device))
        a = randn()
        for t in range(self.steps, 0, -1):
            a_bar, a_bar_prev, beta = self.alpha_bar[t], self.alpha_bar[t - 1], self.beta[t]
            eps = self.noise(s, a, torch.full((len(a),), t, device=a.device))
            mean = (a - beta / (1 - a_bar).sqrt() * eps) / (1 - beta).sqrt()
            spread = (beta * (1 - a_bar_prev) / (1 - a_bar)).sqrt()
            a = mean + spread * randn() if t > 1 else mean
            if t > 1:
                a = torch.where(mask, a_bar_prev.sqrt() * known + (1 - a_bar_prev).sqrt() * randn(), a)
        return self.complete(x, a, action, observed)


def _check_policies(**policies) -> None:
    """Each argument acts (has `Policy`'s `act`), or a one-line error naming it."""
    for name, policy in policies.items():
        if not isinstance(policy, Policy):
            raise UserError(f"{name} must be a policy (an object with act(state, action, given, generator)), "
                            f"got {type(policy).__name__}")


class SharedAutonomy:
    """An operator sets `operator_dims` `[A]` bool of the action; the assistant fills the rest
    given the state and the operator's values (MAC as assistant: p(a_rest | s, a_operator))."""

    def __init__(self, operator: Policy, assistant: Policy, operator_dims: torch.Tensor, conditioned: bool = True):
        if not isinstance(operator_dims, torch.Tensor) or operator_dims.dtype != torch.bool or operator_dims.dim() != 1:
            raise UserError("operator_dims must be a 1-D torch.bool tensor over the action dimensions")
        _check_policies(operator=operator, assistant=assistant)
        self.operator, self.assistant, self.operator_dims = operator, assistant, operator_dims
        self.conditioned = conditioned

    def act(self, state, action=None, given=None, generator=None) -> torch.Tensor:
        """The operator's dims from the operator; the rest from the assistant, which sees the
        operator's values when `conditioned`, else draws from p(a | s) alone (the ablation of
        what conditioning buys: its own draw of the operator's dims is thrown away)."""
        proposal = self.operator.act(state, action, given, generator=generator)
        if len(self.operator_dims) != proposal.shape[-1]:
            raise UserError(f"operator_dims has {len(self.operator_dims)} entries, the action {proposal.shape[-1]} "
                            "dimensions")
        mask = self.operator_dims.to(proposal.device).expand_as(proposal)
        mask = mask if given is None else mask | given
        if self.conditioned:
            return self.assistant.act(state, proposal, mask, generator=generator)
        return torch.where(mask, proposal, self.assistant.act(state, generator=generator))


class MeanOfDraws:
    """Another `Policy` decoded by its mean: the average of `draws` of its own draws per row,
    a Monte Carlo estimate of E[a_rest | s, a_given] — the point an MSE regressor predicts —
    from a policy that otherwise samples. On a unimodal conditional this removes the sampling
    noise a closed-loop controller must then correct; between separated modes it lands where
    a regressor does, between them. `given` dimensions are copied through exactly."""

    def __init__(self, policy: Policy, draws: int = 16):
        _check_policies(policy=policy)
        self.policy, self.draws = policy, check_count(draws, "draws")

    def act(self, state, action=None, given=None, generator=None) -> torch.Tensor:
        """The mean of `draws` draws of the wrapped policy's `act`, row by row: `[B, A]`."""
        if not isinstance(state, torch.Tensor) or state.dim() != 2:
            raise UserError(f"state must be a tensor [batch, state_dim], got "
                             f"{tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__}")
        rows = len(state)
        repeat = (lambda t: None if t is None else t.repeat(self.draws, 1))
        drawn = self.policy.act(repeat(state), repeat(action), repeat(given), generator=generator)
        mean = drawn.view(self.draws, rows, drawn.shape[-1]).mean(0)
        return mean if given is None else torch.where(given.to(mean.device), action.to(mean), mean)


class _PolicyObjective(nn.Module):
    """A policy's loss in the `(x, drawn, generator)` form the trainer's `train_step` calls
    (a policy draws its own nodes, so `drawn` is unused)."""

    def __init__(self, policy: TablePolicy):
        super().__init__()
        self.policy = policy

    def forward(self, rows, drawn=None, generator=None):
        return self.policy.loss(rows, generator=generator)


def fit(policy: TablePolicy, data: Dataset, steps: int = 2000, batch_size: int = 256, lr: float = 1e-3,
        warmup: int = 100, clip: float = 10.0, seed: int = 0, progress: bool = True,
        weight_decay: float = 0.0) -> list[float]:
    """Train any `TablePolicy` on a table Dataset's train rows: AdamW (decoupled
    `weight_decay`), linear warm-up then a cosine to zero, gradient clipping. Returns the
    loss of every step."""
    steps, batch_size = check_count(steps, "steps"), check_count(batch_size, "batch_size")
    if not lr > 0 or not weight_decay >= 0:
        raise UserError(f"need lr > 0 and weight_decay >= 0, got {lr}, {weight_decay}")
    if data.dim != policy.dim:
        raise UserError(f"the table has {data.dim} columns, the policy expects {policy.dim} (state then action)")
    device = policy.mean.device
    optimizer = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    node_gen = gen if device.type == "cpu" else None  # a CPU generator cannot draw on a GPU
    losses = []
    policy.train()
    objective = _PolicyObjective(policy)
    for step in tqdm(range(steps), desc=f"fit {type(policy).__name__}", disable=not progress, dynamic_ncols=True):
        rows = data.train_batch(batch_size, gen).to(device)
        loss, _ = train_step(objective, optimizer, rows, None, lr * lr_factor(step, warmup, "cosine", steps),
                             clip, nullcontext(), node_gen)
        losses.append(loss.item())
    policy.eval()
    return losses
