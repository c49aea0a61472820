"""AnyOrderModel: one network + one head answering every query of an AO-ARM.

The network is a node network, `network(x_in, observed) -> params [B, D, P]`, one pass per
lattice node s giving every edge p(x_j | x_s); or a path network, one pass per path giving
every edge along it (`anyorder.nets.base`). The model adds the lattice (what to train on,
which path a query takes) and walks it with a `Walk` chosen from the network's declared
kind, the one place where the two kinds differ: every query means the same with either.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn
from tqdm import tqdm

from . import budget, lattice
from .errors import UserError
from .heads import Head
from .nets.base import NodeNetwork, PathNetwork


def bits_per_dim(log_prob: torch.Tensor, dim: int) -> torch.Tensor:
    """−log p / (D ln 2): the paper's normalisation by D, for joints and marginals alike."""
    return -log_prob / (dim * math.log(2))


class Walk:
    """How a network of one kind visits the lattice for a model: training draws and losses,
    likelihoods along a path, and sampling. Methods take the model, whose `edge_*` methods
    and checks they use; `x` arrives checked, with blanks where values are absent.
    `budgets`: whether `policy_walk` (step budgets) is available for this kind."""

    budgets = False

    def check(self, model: "AnyOrderModel") -> None:
        """Raise UserError for model options this kind of network cannot train with."""

    def draw_training(self, model, batch: int, generator, device) -> torch.Tensor:
        raise NotImplementedError

    def row_losses(self, model, x: torch.Tensor, drawn: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Per-row training loss `[B]` in nats per variable."""
        raise NotImplementedError

    def path_log_prob(self, model, x, given, target, estimator, num_draws, generator) -> torch.Tensor:
        """log p(x_target | x_given) `[B]` along the protocol's path from `given` to `given ∪ target`."""
        raise NotImplementedError

    def sample(self, model, x, observed, temperature, generator) -> torch.Tensor:
        """x with every unobserved variable drawn in protocol order; x is blank off `observed`."""
        raise NotImplementedError

    def conditional_mean(self, model, x, observed) -> torch.Tensor:
        """The head's point estimate (`Head.point_estimate`: mean, or mode for a discrete
        variable) of every p(x_j | x_observed), j unobserved, `[B, D]` (x elsewhere)."""
        raise NotImplementedError

    def policy_walk(self, model, x, given, target, policy, temperature=None, generator=None,
                    progress=False) -> torch.Tensor:
        """The K-step process of a step-budget policy: draws (with a temperature) or its exact
        log-likelihood `[B]` (without); see `AnyOrderModel.sample`."""
        raise NotImplementedError


class NodeWalk(Walk):
    """Node networks: training nodes from `lattice.training_nodes`, one pass per edge of a path."""

    budgets = True

    def check(self, model):
        strategy_name, inner = lattice.parse_name(model.strategy, lattice.STRATEGIES, "training strategy")
        inner = lattice.mixture_parts(inner)[0] if strategy_name == "mixture" else None
        targets_name, _ = lattice.parse_name(model.targets, lattice.TARGETS, "targets kind")
        if targets_name == "protocol" and "mac-inpaint" in (strategy_name, inner):
            raise UserError("targets='protocol' trains marginal-query paths; inpainting paths "
                             "continue with any unobserved variable, so use targets='all'")
        # An empty draw checks every combination (e.g. query "inpaint" needs "mac-inpaint") now.
        self.draw_training(model, 0, None, None)

    def draw_training(self, model, batch, generator, device):
        return lattice.training_nodes(batch, model.dim, model.strategy, model.protocol, model.reweight,
                                      model.query, generator, device)

    def row_losses(self, model, x, drawn, present):
        """Mean NLL over the targets of each node (×D is ARDM's bound on −log p(x)); a row
        without targets counts as zero, so the batch mean splits exactly over shards."""
        node = model._check_mask(drawn, x, "node") & present
        trained = lattice.targets(node, model.targets, model.protocol) & present
        nll = -model.head.log_prob(model(x, node), x)
        return (nll * trained).sum(-1) / trained.sum(-1).clamp(min=1)

    def path_log_prob(self, model, x, given, target, estimator, num_draws, generator):
        rank = lattice.ranks(given, model.protocol, generator, then=target)
        order = rank.argsort(-1)  # order[b, r]: the variable visited at step r
        start, length = given.sum(-1), target.sum(-1)
        if estimator == "exact":
            total = torch.zeros(len(x), device=x.device)
            for step in range(int(length.max()) if len(x) else 0):
                rows = (length > step).nonzero().squeeze(-1)
                place = start[rows] + step
                node = rank[rows] < place.unsqueeze(-1)
                var = order[rows, place]
                total = total.index_add(0, rows, model.edge_log_prob(x[rows], node, var))
            return total
        draws = []
        for _ in range(num_draws):
            step = (torch.rand(len(x), generator=generator, device=x.device) * length).long()
            place = (start + step).clamp(max=x.shape[1] - 1)
            node = rank < place.unsqueeze(-1)
            var = order.gather(1, place.unsqueeze(-1)).squeeze(-1)
            draws.append(length * model.edge_log_prob(x, node, var))
        return torch.stack(draws).mean(0)

    def sample(self, model, x, observed, temperature, generator):
        order = lattice.ranks(observed, model.protocol, generator).argsort(-1)
        start = observed.sum(-1)
        node = observed.clone()
        for place in range(int(start.min()) if len(x) else x.shape[1], x.shape[1]):
            rows = (start <= place).nonzero().squeeze(-1)
            var = order[rows, place]
            value = model.edge_sample(x[rows], node[rows], var, temperature, generator)
            x[rows, var] = value.to(x.dtype)
            node[rows, var] = True
        return x

    def conditional_mean(self, model, x, observed):
        """One pass at the node `observed` (the one-pass imputation)."""
        return torch.where(observed, x, model.head.point_estimate(model(x, observed)).to(x.dtype))

    def policy_walk(self, model, x, given, target, policy, temperature=None, generator=None, progress=False):
        """Step k takes every target at path places b_{k-1}..b_k - 1 (the policy rescaled to the
        row's path length |target|, `budget.row_boundaries`) from the one node given ∪ the
        places before b_{k-1}: one pass per step for all rows. With a temperature it draws
        them, independently, into x (in place) and returns x; without, it returns
        Σ_k Σ_{t in step k} log p(x_{u_t} | x_given, x_{u<b_{k-1}}) per row `[B]` — the exact
        likelihood of that sampler, sharing this one walk so the two cannot drift apart.
        """
        rank = lattice.ranks(given, model.protocol, generator, then=target)
        start = given.sum(-1, keepdim=True)
        bounds = start + budget.row_boundaries(policy, target.sum(-1))       # [B, K+1] path places
        total = torch.zeros(len(x), device=x.device)
        for k in tqdm(range(bounds.shape[1] - 1), desc="passes", disable=not progress, dynamic_ncols=True):
            rows = (bounds[:, k + 1] > bounds[:, k]).nonzero().squeeze(-1)
            if len(rows) == 0:
                continue
            place, low, high = rank[rows], bounds[rows, k, None], bounds[rows, k + 1, None]
            node, step = place < low, (place >= low) & (place < high)
            values = x[rows]
            params = model(values, node)
            if temperature is None:
                logp = torch.where(step, model.head.log_prob(params, values), 0.0)
                total = total.index_add(0, rows, logp.sum(-1))
            else:
                values[step] = model.head.sample(params[step], temperature, generator,
                                                 var=step.nonzero(as_tuple=True)[1]).to(x.dtype)
                x[rows] = values
        return total if temperature is None else x


class PathWalk(Walk):
    """Path networks: training paths from `lattice.training_paths`, one pass per path, and
    sampling with a key/value cache (the given set encoded once, one slot per new variable)."""

    def check(self, model):
        lattice.training_paths(0, model.dim, model.protocol, model.query, model.path_mix)

    def draw_training(self, model, batch, generator, device):
        return lattice.training_paths(batch, model.dim, model.protocol, model.query, model.path_mix,
                                      generator, device)

    @staticmethod
    def edge_params(model, x, path):
        """One pass along `path`: params of every target's edge, `[B, D, P]` (zero off the targets)."""
        return model.network(torch.where(path < x.shape[1], x, model.head.blank(x)), path)

    def row_losses(self, model, x, drawn, present):
        """Σ_t −log p(x_{u_t} | x_o, x_{u<t}) / D per row, over both paths of a packed row:
        unbiased for the test objective in nats per variable of the queries drawn."""
        dim = x.shape[1]
        if not isinstance(drawn, torch.Tensor) or drawn.dtype != torch.int64 or drawn.shape != x.shape:
            raise UserError(f"paths must be an int64 tensor of x's shape {tuple(x.shape)} (see lattice.paths)")
        if drawn.numel() and (drawn.min() < lattice.GIVEN or drawn.max() >= 2 * dim + 1):
            raise UserError(f"path values must lie in -1..{2 * dim} (given, target step, off the path, "
                             "a packed second path's step)")
        if not present.all():
            raise UserError("a path network trains on complete rows; x has missing (NaN) cells")
        path = drawn.to(x.device)
        on = (path >= 0) & (path != dim)
        nll = -model.head.log_prob(self.edge_params(model, x, path), x)
        return (nll * on).sum(-1) / dim

    def path_log_prob(self, model, x, given, target, estimator, num_draws, generator):
        path = lattice.paths(given, target, model.protocol, generator)
        x = torch.where(given | target, x, model.head.blank(x))
        log_p = model.head.log_prob(self.edge_params(model, x, path), x)   # [B, D]
        if estimator == "exact":
            return (log_p * target).sum(-1)
        length = target.sum(-1)
        draws = []
        for _ in range(num_draws):   # the pass already holds every edge: draw steps, no new passes
            step = (torch.rand(len(x), generator=generator, device=x.device) * length).long()
            draws.append(length * (log_p * (path == step.unsqueeze(-1))).sum(-1))
        return torch.stack(draws).mean(0)

    def sample(self, model, x, observed, temperature, generator):
        dim = x.shape[1]
        order = lattice.paths(observed, ~observed, model.protocol, generator).argsort(dim=-1, stable=True)
        start, length = observed.sum(-1), (~observed).sum(-1)
        steps = int(length.max()) if len(x) else 0
        # Every step's variable per row, `[steps, B]`, fixed by the path (rows that are done repeat their last).
        place = (start + torch.arange(steps, device=x.device)[:, None]).clamp(max=dim - 1)
        variables = order.t().gather(0, place)
        every_row_until = int(length.min()) if len(x) else 0
        cache = model.network.begin(x, observed)
        value = None
        for step, var in enumerate(variables):
            params = model.network.extend(cache, var, value)
            if step < every_row_until:            # no row is done yet: no row selection
                value = model.head.sample(params, temperature, generator, var=var).to(x.dtype)
                x.scatter_(1, var[:, None], value[:, None])
            else:
                rows = (length > step).nonzero().squeeze(-1)
                x[rows, var[rows]] = model.head.sample(params[rows], temperature, generator, var=var[rows]).to(x.dtype)
                value = x.gather(1, var[:, None]).squeeze(-1)
        return x

    def conditional_mean(self, model, x, observed):
        raise UserError("the one-pass conditional mean needs a node network (a path network gives "
                        "p(x_j | x_o) for one j per path); draw imputations instead")


WALKS = {"node": NodeWalk(), "path": PathWalk()}


class AnyOrderModel(nn.Module):
    """An any-order autoregressive model trained and queried along one protocol.

    The protocol fixes the path every likelihood and sample follows; deterministic ones
    (`natural`, `strided(S)`) make exact likelihoods exact, `random` gives one-order ELBO
    samples. A node network trains on nodes: strategy / reweight / query choose them
    (`lattice.training_nodes`), targets the edges trained at each (`lattice.targets`). A
    path network trains on whole paths: path_mix weighs joint, marginal (e ~ query),
    conditional (inpainting) paths and packed marginal pairs (`lattice.training_paths`).
    """

    def __init__(self, network: NodeNetwork | PathNetwork, head: Head, strategy: str = "mac",
                 protocol: str = "natural", reweight: bool = True, targets: str = "all",
                 query: str = "card-uniform", path_mix=(1.0, 1.0, 1.0)):
        super().__init__()
        if not isinstance(network, (NodeNetwork, PathNetwork)):
            raise UserError("network must be an anyorder.nets.NodeNetwork or PathNetwork, "
                             f"got {type(network).__name__}")
        lattice.parse_name(strategy, lattice.STRATEGIES, "training strategy")
        lattice.parse_name(protocol, lattice.PROTOCOLS, "protocol")
        lattice.parse_name(query, lattice.QUERIES, "query distribution")
        lattice.parse_name(targets, lattice.TARGETS, "targets kind")
        self.network, self.head = network, head
        self.strategy, self.protocol, self.reweight = strategy, protocol, reweight
        self.targets, self.query, self.path_mix = targets, query, tuple(path_mix)
        self.dim = network.dim
        self.walk = WALKS[network.answers]
        self.walk.check(self)
        self._policy_in_use = None      # set by query_options(steps=..., policy=...)

    # ---------------------------------------------------------------- inputs
    def _check_x(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise UserError(f"{name} must be a tensor [batch, D], got {shape}")
        if x.shape[1] != self.dim:
            raise UserError(f"{name} has {x.shape[1]} variables per row, the network expects {self.dim}")
        return x if x.is_floating_point() else x.long()

    def _check_mask(self, mask: torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            what = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise UserError(f"{name} must be a torch.bool tensor (True = in the set), got {what}")
        if mask.shape != x.shape:
            raise UserError(f"{name} has shape {tuple(mask.shape)}, x has {tuple(x.shape)}")
        return mask.to(x.device)

    def _check_values(self, x: torch.Tensor, where: torch.Tensor, name: str = "x") -> None:
        self.head.check_values(torch.where(where, x, self.head.blank(x)), name)

    @contextmanager
    def query_options(self, steps: int | None = None, policy=None, **options):
        """Settings for every query inside the `with` block. steps / policy: the step budget
        that log_prob, conditional_log_prob and sample follow when a call names none; models
        with more than one kind of conditional take more (ACE: model, num_importance)."""
        if options:
            raise UserError(f"{', '.join(sorted(options))}: this {type(self).__name__} takes no query options "
                            "besides steps and policy (those are for ACE models)")
        saved = self._policy_in_use
        self._policy_in_use = None if steps is None and policy is None else self._policy(steps, policy)
        try:
            yield self
        finally:
            self._policy_in_use = saved

    def forward(self, x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """Parameters of every edge out of the node `observed`: `[B, D, P]` (node networks)."""
        x_in = torch.where(observed, x, self.head.blank(x))
        return self.network(x_in, observed)

    # ---------------------------------------------------------------- edges
    def edge_params(self, x: torch.Tensor, node: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """Parameters of p(x_var | x_node) for one variable per row: `[N, D]`, `[N, D]`, `[N]` -> `[N, P]`
        (the network's `forward_at`, which may skip work at the other variables)."""
        return self.network.forward_at(torch.where(node, x, self.head.blank(x)), node, var)

    def edge_log_prob(self, x: torch.Tensor, node: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """log p(x_var | x_node) for one variable per row: `[N, D]`, `[N, D]`, `[N]` -> `[N]`."""
        value = x.gather(1, var.unsqueeze(1))
        return self.head.log_prob(self.edge_params(x, node, var).unsqueeze(1), value, var.unsqueeze(1)).squeeze(1)

    def edge_sample(self, x: torch.Tensor, node: torch.Tensor, var: torch.Tensor,
                    temperature: float = 1.0, generator=None) -> torch.Tensor:
        """A draw of x_var ~ p(· | x_node) per row: `[N]`."""
        return self.head.sample(self.edge_params(x, node, var), temperature, generator, var=var)

    # ---------------------------------------------------------------- training
    def begin_step(self, step: int) -> None:
        """The trainer calls this before each optimiser step (`step` = steps taken so far):
        a model whose objective follows a schedule (ACE's energy warm-up) sets it here; an
        AO-ARM's objective has none."""

    def validation_options(self) -> dict:
        """The query options of the trainer's validation estimate (`query_options`); none here."""
        return {}

    def draw_training(self, batch: int, generator=None, device=None) -> torch.Tensor:
        """What the network trains on for `batch` rows: nodes `[B, D]` bool for a node network,
        paths `[B, D]` int64 for a path network. The trainer draws one global batch from one
        generator and gives each data-parallel process its rows."""
        return self.walk.draw_training(self, batch, generator, device)

    def loss(self, x: torch.Tensor, drawn: torch.Tensor | None = None, generator=None) -> torch.Tensor:
        """Mean training loss over rows, in nats per variable.

        `drawn` are this batch's nodes or paths (`draw_training`; drawn here when None).
        Node networks: per row, the mean NLL over the node's targets. Path networks: per
        row, the NLL summed over the path's edges / D. NaN cells of continuous data are
        missing: never observed, never targets.
        """
        x = self._check_x(x)
        present = ~torch.isnan(x) if x.is_floating_point() else torch.ones_like(x, dtype=torch.bool)
        x = torch.where(present, x, self.head.blank(x))
        self._check_values(x, present)
        if drawn is None:
            drawn = self.draw_training(len(x), generator, x.device)
        per_row = self.walk.row_losses(self, x, drawn, present)
        return per_row.sum() / max(1, len(per_row))      # an empty batch has loss 0, not NaN

    # ---------------------------------------------------------------- likelihoods
    def _query(self, x, target, given, estimator, num_draws, generator, policy=None):
        if estimator not in ("exact", "one-step"):
            raise UserError(f"unknown estimator {estimator!r}; expected 'exact' or 'one-step'")
        if num_draws < 1:
            raise UserError(f"num_draws must be >= 1, got {num_draws}")
        if (target & given).any():
            raise UserError("target and given overlap: a variable cannot be both asked and observed")
        if not target.any(-1).all():
            raise UserError("the target mask is empty for some rows; a query needs at least one variable")
        self._check_values(x, target | given)
        if policy is not None:
            return self.walk.policy_walk(self, x, given, target, policy, generator=generator)
        return self.walk.path_log_prob(self, x, given, target, estimator, num_draws, generator)

    def log_prob(self, x: torch.Tensor, mask: torch.Tensor | None = None, estimator: str = "exact",
                 num_draws: int = 1, generator=None, *, steps: int | None = None,
                 policy=None) -> torch.Tensor:
        """log p(x_mask) per row `[B]` (mask None = the joint), in nats.

        exact: Σ_t log p(x_e(t) | x_e(<t)) in protocol order (a node network takes |e|
        batched passes, each row stopping where its path ends; a path network one pass).
        one-step: |e| · log p(x_e(k+1) | x_e(≤k)) with k ~ U{0..|e|-1}, averaged over
        `num_draws` draws; unbiased for the exact value under a deterministic protocol.
        steps / policy: the exact likelihood of the K-step sampler instead (see `sample`);
        K = |e| gives the exact value above.
        """
        x = self._check_x(x)
        mask = torch.ones_like(x, dtype=torch.bool) if mask is None else self._check_mask(mask, x, "mask")
        policy = self._policy(steps, policy, estimator)
        return self._query(x, mask, torch.zeros_like(mask), estimator, num_draws, generator, policy)

    def conditional_log_prob(self, x: torch.Tensor, target: torch.Tensor, given: torch.Tensor,
                             estimator: str = "exact", num_draws: int = 1, method: str = "chain",
                             generator=None, *, steps: int | None = None, policy=None) -> torch.Tensor:
        """log p(x_target | x_given) per row `[B]`.

        chain (default): the lattice path from node `given` to `given ∪ target`, visiting
        the target in protocol order — the path `sample` walks, so its exponent is the
        normalised distribution that `sample` draws from. ratio: log p(x_{o∪u}) − log p(x_o)
        along marginal paths; both agree for a consistent model. steps / policy (chain only):
        the exact conditional of the K-step sampler `sample(..., steps=, policy=)`.
        """
        x = self._check_x(x)
        target = self._check_mask(target, x, "target")
        given = self._check_mask(given, x, "given")
        policy = self._policy(steps, policy, estimator)
        if method == "chain":
            return self._query(x, target, given, estimator, num_draws, generator, policy)
        if method != "ratio":
            raise UserError(f"unknown method {method!r}; expected 'chain' or 'ratio'")
        if (target & given).any():
            raise UserError("target and given overlap: a variable cannot be both asked and observed")
        if policy is not None:
            raise UserError("steps / policy give the likelihood of the K-step sampler, which walks "
                            "the chain; use method='chain'")
        joint = self._query(x, target | given, torch.zeros_like(given), estimator, num_draws, generator)
        if not given.any():
            return joint
        evidence = self.walk.path_log_prob(self, x, torch.zeros_like(given), given, estimator, num_draws, generator)
        return joint - evidence

    # ---------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, x: torch.Tensor, observed: torch.Tensor, temperature: float = 1.0,
               generator=None, *, steps: int | None = None, policy=None,
               progress: bool = False) -> torch.Tensor:
        """Fill the unobserved variables of x `[B, D]`: observed first, then the rest in
        protocol order, one variable per step (a node network's pass, or one new slot of a
        path network's key/value cache). An all-False mask samples unconditionally;
        observed values are returned unchanged. steps=K or policy=[0, b_1, …, b_K] (node
        networks): K passes, each drawing a block of the path at once, independently, from
        one node; progress: a bar counting them."""
        x = self._check_x(x)
        observed = self._check_mask(observed, x, "observed")
        if temperature < 0 or not math.isfinite(temperature):
            raise UserError(f"temperature must be a finite number >= 0, got {temperature}")
        self._check_values(x, observed, "observed values")
        policy = self._policy(steps, policy)
        x = torch.where(observed, x, self.head.blank(x))
        if policy is not None:
            return self.walk.policy_walk(self, x, observed, ~observed, policy, temperature, generator, progress)
        return self.walk.sample(self, x, observed, temperature, generator)

    @torch.no_grad()
    def conditional_mean(self, x: torch.Tensor, observed: torch.Tensor, generator=None) -> torch.Tensor:
        """Every unobserved x_j replaced by the head's point estimate of p(x_j | x_observed)
        (the one-pass imputation: the mean, or the mode of a discrete variable); `[B, D]` -> `[B, D]`."""
        x = self._check_x(x)
        observed = self._check_mask(observed, x, "observed")
        return self.walk.conditional_mean(self, x, observed)

    # ---------------------------------------------------------------- step budgets
    def _policy(self, steps, policy, estimator: str = "exact") -> torch.Tensor | None:
        """The policy `[K+1]` a call asks for (explicit, K evenly spaced steps, or the one
        `query_options` set); None = one variable per pass."""
        if steps is None and policy is None:
            policy = self._policy_in_use
            if policy is None:
                return None
        if not self.walk.budgets:
            raise UserError(f"step budgets (steps / policy) are for node networks; {type(self.network).__name__} "
                            "already scores a path in one pass and samples from a key/value cache")
        if estimator != "exact":
            raise UserError("steps / policy give the exact likelihood of the K-step sampler; "
                            "use estimator='exact'")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise UserError(f"steps must be an integer >= 1, got {steps!r}")
        if policy is None:
            return torch.arange(steps + 1)
        policy = budget.check_policy(policy)
        if steps is not None and steps != len(policy) - 1:
            raise UserError(f"steps={steps} but the policy has {len(policy) - 1} steps; pass one of them")
        return policy
