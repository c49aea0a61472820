"""AnyOrderModel: one network + one head answering every query of an AO-ARM.

Contract with the network: `network(x_in, observed) -> params [B, D, P]`, where x_in
`[B, D]` holds the observed values and the head's blank elsewhere, and `observed` is the
node `[B, D]` bool. One pass at node s gives every edge p(x_j | x_s) out of s. The model
adds the lattice: which nodes to train on, which path a query takes, and how to walk it.
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


def bits_per_dim(log_prob: torch.Tensor, dim: int) -> torch.Tensor:
    """−log p / (D ln 2): the paper's normalisation by D, for joints and marginals alike."""
    return -log_prob / (dim * math.log(2))


class AnyOrderModel(nn.Module):
    """An any-order autoregressive model trained and queried along one protocol.

    strategy / reweight / query choose the training nodes (`lattice.training_nodes`),
    targets the edges trained at each node (`lattice.targets`), protocol the path that
    every likelihood and sample follows. Deterministic protocols (`natural`,
    `strided(S)`) make exact likelihoods exact; `random` gives one-order ELBO samples.
    """

    def __init__(self, network: nn.Module, head: Head, strategy: str = "mac",
                 protocol: str = "natural", reweight: bool = True, targets: str = "all",
                 query: str = "card-uniform"):
        super().__init__()
        strategy_name, inner = lattice.parse_name(strategy, lattice.STRATEGIES, "training strategy")
        inner = lattice.mixture_parts(inner)[0] if strategy_name == "mixture" else None
        lattice.parse_name(protocol, lattice.PROTOCOLS, "protocol")
        lattice.parse_name(query, lattice.QUERIES, "query distribution")
        targets_name, _ = lattice.parse_name(targets, lattice.TARGETS, "targets kind")
        if targets_name == "protocol" and "mac-inpaint" in (strategy_name, inner):
            raise UserError("targets='protocol' trains marginal-query paths; inpainting paths "
                             "continue with any unobserved variable, so use targets='all'")
        self.network, self.head = network, head
        self.strategy, self.protocol, self.reweight = strategy, protocol, reweight
        self.targets, self.query = targets, query
        self.dim = getattr(network, "dim", None)
        self._policy_in_use = None      # set by query_options(policy=...)
        # An empty draw checks every combination (e.g. query "inpaint" needs "mac-inpaint") now.
        lattice.training_nodes(0, self.dim or 1, strategy, protocol, reweight, query)

    # ---------------------------------------------------------------- inputs
    def _check_x(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise UserError(f"{name} must be a tensor [batch, D], got {shape}")
        if self.dim is not None and x.shape[1] != self.dim:
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
        self.head.check_values(x[where], name)

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
        """Parameters of every edge out of the node `observed`: `[B, D, P]`."""
        x_in = torch.where(observed, x, self.head.blank(x))
        return self.network(x_in, observed)

    # ---------------------------------------------------------------- edges
    def edge_log_prob(self, x: torch.Tensor, node: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """log p(x_var | x_node) for one variable per row: `[N, D]`, `[N, D]`, `[N]` -> `[N]`."""
        rows = torch.arange(len(var), device=var.device)
        params = self(x, node)[rows, var]
        return self.head.log_prob(params.unsqueeze(1), x[rows, var].unsqueeze(1)).squeeze(1)

    def edge_sample(self, x: torch.Tensor, node: torch.Tensor, var: torch.Tensor,
                    temperature: float = 1.0, generator=None) -> torch.Tensor:
        """A draw of x_var ~ p(· | x_node) per row: `[N]`."""
        rows = torch.arange(len(var), device=var.device)
        return self.head.sample(self(x, node)[rows, var], temperature, generator)

    # ---------------------------------------------------------------- training
    def loss(self, x: torch.Tensor, node: torch.Tensor | None = None, generator=None) -> torch.Tensor:
        """Mean NLL over the targets at training nodes, in nats per variable.

        Each row's loss is the mean over its targets (×D is ARDM's bound on −log p(x));
        the batch mean counts a row without targets as zero, so it splits exactly over
        data-parallel shards. NaN cells of continuous data are missing: never observed,
        never targets. `node` overrides the sampled nodes (e.g. one global draw under DDP).
        """
        x = self._check_x(x)
        present = ~torch.isnan(x) if x.is_floating_point() else torch.ones_like(x, dtype=torch.bool)
        x = torch.where(present, x, self.head.blank(x))
        self._check_values(x, present)
        if node is None:
            node = lattice.training_nodes(*x.shape, self.strategy, self.protocol, self.reweight,
                                          self.query, generator, x.device)
        node = self._check_mask(node, x, "node") & present
        trained = lattice.targets(node, self.targets, self.protocol) & present
        nll = -self.head.log_prob(self(x, node), x)
        per_row = (nll * trained).sum(-1) / trained.sum(-1).clamp(min=1)
        return per_row.sum() / max(1, len(per_row))      # an empty batch has loss 0, not NaN

    # ---------------------------------------------------------------- likelihoods
    def _path_log_prob(self, x, given, target, estimator, num_draws, generator):
        """log p(x_target | x_given) along the protocol's path from `given` to `given ∪ target`."""
        rank = lattice.ranks(given, self.protocol, generator, then=target)
        order = rank.argsort(-1)  # order[b, r]: the variable visited at step r
        start, length = given.sum(-1), target.sum(-1)
        if estimator == "exact":
            total = torch.zeros(len(x), device=x.device)
            for step in range(int(length.max()) if len(x) else 0):
                rows = (length > step).nonzero().squeeze(-1)
                place = start[rows] + step
                node = rank[rows] < place.unsqueeze(-1)
                var = order[rows, place]
                total = total.index_add(0, rows, self.edge_log_prob(x[rows], node, var))
            return total
        draws = []
        for _ in range(num_draws):
            step = (torch.rand(len(x), generator=generator, device=x.device) * length).long()
            place = (start + step).clamp(max=x.shape[1] - 1)
            node = rank < place.unsqueeze(-1)
            var = order.gather(1, place.unsqueeze(-1)).squeeze(-1)
            draws.append(length * self.edge_log_prob(x, node, var))
        return torch.stack(draws).mean(0)

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
            return self._policy_walk(x, given, target, policy, generator=generator)
        return self._path_log_prob(x, given, target, estimator, num_draws, generator)

    def log_prob(self, x: torch.Tensor, mask: torch.Tensor | None = None, estimator: str = "exact",
                 num_draws: int = 1, generator=None, *, steps: int | None = None,
                 policy=None) -> torch.Tensor:
        """log p(x_mask) per row `[B]` (mask None = the joint), in nats.

        exact: Σ_t log p(x_e(t) | x_e(<t)) in protocol order, |e| batched passes, each row
        stopping where its path ends. one-step: |e| · log p(x_e(k+1) | x_e(≤k)) with
        k ~ U{0..|e|-1}, averaged over `num_draws` passes; unbiased for the exact value
        under a deterministic protocol. steps / policy: the exact likelihood of the K-step
        sampler instead (see `sample`); K = |e| gives the exact value above.
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
        evidence = self._path_log_prob(x, torch.zeros_like(given), given, estimator, num_draws, generator)
        return joint - evidence

    # ---------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, x: torch.Tensor, observed: torch.Tensor, temperature: float = 1.0,
               generator=None, *, steps: int | None = None, policy=None,
               progress: bool = False) -> torch.Tensor:
        """Fill the unobserved variables of x `[B, D]`: observed first, then the rest in
        protocol order, one variable per pass. An all-False mask samples unconditionally;
        observed values are returned unchanged. steps=K or policy=[0, b_1, …, b_K]: K passes,
        each drawing a block of the path at once (see `_policy_walk`); progress: a bar
        counting them."""
        x = self._check_x(x)
        observed = self._check_mask(observed, x, "observed")
        if temperature < 0 or not math.isfinite(temperature):
            raise UserError(f"temperature must be a finite number >= 0, got {temperature}")
        self._check_values(x, observed, "observed values")
        policy = self._policy(steps, policy)
        if policy is not None:
            x = torch.where(observed, x, self.head.blank(x))
            return self._policy_walk(x, observed, ~observed, policy, temperature, generator, progress)
        order = lattice.ranks(observed, self.protocol, generator).argsort(-1)
        start = observed.sum(-1)
        x, node = torch.where(observed, x, self.head.blank(x)), observed.clone()
        for place in range(int(start.min()) if len(x) else x.shape[1], x.shape[1]):
            rows = (start <= place).nonzero().squeeze(-1)
            var = order[rows, place]
            value = self.edge_sample(x[rows], node[rows], var, temperature, generator)
            x[rows, var] = value.to(x.dtype)
            node[rows, var] = True
        return x

    @torch.no_grad()
    def conditional_mean(self, x: torch.Tensor, observed: torch.Tensor, generator=None) -> torch.Tensor:
        """Every unobserved x_j replaced by the head's mean of p(x_j | x_observed), all in one
        pass at the node `observed` (the one-pass imputation); `[B, D]` -> `[B, D]`."""
        x = self._check_x(x)
        observed = self._check_mask(observed, x, "observed")
        return torch.where(observed, x, self.head.mean(self(x, observed)).to(x.dtype))

    # ---------------------------------------------------------------- step budgets
    def _policy(self, steps, policy, estimator: str = "exact") -> torch.Tensor | None:
        """The policy `[K+1]` a call asks for: explicit, or K evenly spaced steps; None = one per pass."""
        if steps is None and policy is None:
            policy = self._policy_in_use
            if policy is None:
                return None
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

    def _policy_walk(self, x, given, target, policy, temperature=None, generator=None, progress=False):
        """The K-step process of `policy` along the path from node `given` over `target`.

        Step k takes every target at path places b_{k-1}..b_k - 1 (the policy rescaled to the
        row's path length |target|, `budget.row_boundaries`) from the one node given ∪ the
        places before b_{k-1}: one pass per step for all rows. With a temperature it draws
        them, independently, into x (in place) and returns x; without, it returns
        Σ_k Σ_{t in step k} log p(x_{u_t} | x_given, x_{u<b_{k-1}}) per row `[B]` — the exact
        likelihood of that sampler, sharing this one walk so the two cannot drift apart.
        """
        rank = lattice.ranks(given, self.protocol, generator, then=target)
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
            params = self(values, node)
            if temperature is None:
                logp = torch.where(step, self.head.log_prob(params, values), 0.0)
                total = total.index_add(0, rows, logp.sum(-1))
            else:
                values[step] = self.head.sample(params[step], temperature, generator).to(x.dtype)
                x[rows] = values
        return total if temperature is None else x
