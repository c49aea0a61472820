"""AnyOrderModel: one network + one head answering every query of an AO-ARM.

The network is a node network, `network(x_in, observed) -> params [B, D, P]`, one pass per
lattice node s giving every edge p(x_j | x_s); or a path network, one pass per path giving
every edge along it (`anyorder.nets.base`). The model adds the lattice (what to train on,
which path a query takes) and walks it with a `Walk` chosen from the network's declared
kind, the one place where the two kinds differ: every query means the same with either.
"""

from __future__ import annotations

import itertools
import math
from contextlib import contextmanager

import torch
from torch import nn
from tqdm import tqdm

from . import budget, lattice
from .errors import UserError, check_count
from .heads import Head, check_temperature
from .nets.base import NodeNetwork, PathNetwork


def bits_per_dim(log_prob: torch.Tensor, dim: int) -> torch.Tensor:
    """−log p / (D ln 2): the paper's normalisation by D, for joints and marginals alike."""
    return -log_prob / (dim * math.log(2))


DRAW_CHUNK = 2 ** 20      # one-step draws × rows a path walk gathers at once (bounded memory)


class Walk:
    """How a network of one kind visits the lattice for a model: training draws and losses,
    likelihoods along a path, the step-by-step conditionals that sampling, K-step likelihoods
    and compression share, and one-pass conditionals. Methods take the model, whose `edge_*`
    methods and checks they use; `x` arrives checked, with blanks where values are absent.
    A walk's steps are given as `rank` (`lattice.ranks`: given first, then the targets in
    protocol order) and `bounds` `[B, K+1]`: absolute path places, step k visiting places
    bounds[:, k]..bounds[:, k+1] - 1 (`AnyOrderModel._plan`)."""

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

    def conditionals(self, model, x, given, rank, bounds):
        """The generator behind `AnyOrderModel.conditionals`: per step, (rows, var, params)."""
        raise NotImplementedError

    def policy_log_prob(self, model, x, given, target, rank, bounds) -> torch.Tensor:
        """Σ_k Σ_{t in step k} log p(x_{u_t} | x_given, x_{u<b_k}) per row `[B]`: the exact
        likelihood of the K-step sampler, here by walking the same conditionals."""
        total = torch.zeros(len(x), device=x.device)
        for rows, var, params in self.conditionals(model, x, given, rank, bounds):
            log_p = model.head.log_prob(params[:, None], x[rows, var][:, None], var[:, None])[:, 0]
            total = total.index_add(0, rows, log_p)
        return total

    def sample(self, model, x, observed, rank, bounds, temperature, generator, progress=False) -> torch.Tensor:
        """x with every unobserved variable drawn step by step along `bounds`, into x (in place)."""
        steps = self.conditionals(model, x, observed, rank, bounds)
        for rows, var, params in tqdm(steps, total=bounds.shape[1] - 1, desc="passes", disable=not progress,
                                      dynamic_ncols=True):
            x[rows, var] = model.head.sample(params, temperature, generator, var=var).to(x.dtype)
        return x

    def conditional_mean(self, model, x, observed) -> torch.Tensor:
        """The head's point estimate (`Head.point_estimate`: mean, or mode for a discrete
        variable) of every p(x_j | x_observed), j unobserved, `[B, D]` (x elsewhere)."""
        raise NotImplementedError

    def step_losses(self, model, x, given, rank) -> torch.Tensor:
        """−log p(x_{u_j} | x_given, x_{u<t}) `[B, m, m]` float64 at [b, t, j] for every j >= t
        (0 below the diagonal), u the m targets after `given` in `rank` order (equal m per row):
        the measurements of `budget.step_losses`."""
        raise NotImplementedError


class NodeWalk(Walk):
    """Node networks: training nodes from `lattice.training_nodes`, one pass per step of a path."""

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
        total = torch.zeros(len(x), device=x.device)      # a running sum: memory does not grow with draws
        for _ in range(num_draws):
            step = (torch.rand(len(x), generator=generator, device=x.device) * length).long()
            place = (start + step).clamp(max=x.shape[1] - 1)
            node = rank < place.unsqueeze(-1)
            var = order.gather(1, place.unsqueeze(-1)).squeeze(-1)
            total += length * model.edge_log_prob(x, node, var)
        return total / num_draws

    @torch.no_grad()
    def conditionals(self, model, x, given, rank, bounds):
        """One pass per step at the node given ∪ the earlier steps, for the rows whose step is
        not empty; a step of one variable per row asks the network for that variable only."""
        order = rank.argsort(-1)
        single = bool((bounds.diff(dim=-1) <= 1).all())
        for k in range(bounds.shape[1] - 1):
            low, high = bounds[:, k], bounds[:, k + 1]
            rows = (high > low).nonzero().squeeze(-1)
            if not len(rows):
                continue
            node = rank[rows] < low[rows, None]
            if single:
                var = order[rows, low[rows]]
                yield rows, var, model.edge_params(x[rows], node, var)
                continue
            params = model(x[rows], node)
            place = low[rows, None] + torch.arange(int((high - low).max()), device=x.device)
            member, offset = (place < high[rows, None]).nonzero(as_tuple=True)
            var = order[rows[member], place[member, offset]]
            yield rows[member], var, params[member, var]

    def sample(self, model, x, observed, rank, bounds, temperature, generator, progress=False):
        """One variable per step draws with `model.edge_sample` (which a model may refine, as
        ACE's importance resampling does); step budgets draw from `conditionals`."""
        if not bool((bounds.diff(dim=-1) <= 1).all()):
            return super().sample(model, x, observed, rank, bounds, temperature, generator, progress)
        order = rank.argsort(-1)
        node = observed.clone()
        for k in tqdm(range(bounds.shape[1] - 1), desc="passes", disable=not progress, dynamic_ncols=True):
            rows = (bounds[:, k + 1] > bounds[:, k]).nonzero().squeeze(-1)
            if not len(rows):
                continue
            var = order[rows, bounds[rows, k]]
            x[rows, var] = model.edge_sample(x[rows], node[rows], var, temperature, generator).to(x.dtype)
            node[rows, var] = True
        return x

    def conditional_mean(self, model, x, observed):
        """One pass at the node `observed` (the one-pass imputation)."""
        return torch.where(observed, x, model.head.point_estimate(model(x, observed)).to(x.dtype))

    def step_losses(self, model, x, given, rank):
        """m passes, one per node given ∪ u_<t."""
        observed = int(given[0].sum()) if len(x) else 0
        path = rank.argsort(-1)[:, observed:]
        m = path.shape[1]
        out = torch.zeros(len(x), m, m, dtype=torch.float64, device=x.device)
        for t in range(m):
            nll = -model.head.log_prob(model(x, rank < observed + t), x).double()
            out[:, t, t:] = nll.gather(1, path[:, t:])
        return out


class PathWalk(Walk):
    """Path networks: training paths from `lattice.training_paths` with random step
    boundaries (`lattice.training_steps`), one pass per path for every likelihood, and a
    key/value cache for walks (the given set encoded once, then each step's block predicted
    from the cache and appended to it)."""

    def check(self, model):
        lattice.training_paths(0, model.dim, model.protocol, model.query, model.path_mix)

    def draw_training(self, model, batch, generator, device):
        """`[B, 2, D]` int64: each row's path and the steps of its drawn query stream
        (`lattice.training_walks`)."""
        path, steps, _ = lattice.training_walks(batch, model.dim, model.protocol, model.query, model.path_mix,
                                                generator, device)
        return torch.stack([path, steps], 1)

    @staticmethod
    def edge_params(model, x, path, step=None):
        """One pass along `path` (with `step`, see `PathNetwork`): params of every target's edge,
        `[B, D, P]` (zero off the targets)."""
        return model.network(torch.where(path < x.shape[1], x, model.head.blank(x)), path, step)

    def row_losses(self, model, x, drawn, present):
        """Σ_t −log p(x_{u_t} | …) / D per row over both paths of a packed row, averaged over
        the query streams of one pass: the exact path (each target its own step) and, where
        `drawn` holds steps, the row's drawn step budget. Each is unbiased for the test objective in nats per variable
        of the queries drawn (the first at K = |u|, the second at the drawn budget). Under
        natural-strided each row is one walk, its drawn steps the only stream."""
        dim = x.shape[1]
        if not isinstance(drawn, torch.Tensor) or drawn.dtype != torch.int64 or \
                drawn.shape not in ((len(x), dim), (len(x), 2, dim)):
            raise UserError(f"paths must be an int64 tensor [{len(x)}, {dim}] (see lattice.paths), or "
                            f"[{len(x)}, 2, {dim}]: paths and their steps (see AnyOrderModel.draw_training)")
        drawn = drawn.to(x.device)
        path = drawn if drawn.dim() == 2 else drawn[:, 0]
        if path.numel() and (path.min() < lattice.GIVEN or path.max() >= 2 * dim + 1):
            raise UserError(f"path values must lie in -1..{2 * dim} (given, target step, off the path, "
                             "a packed second path's step)")
        if not present.all():
            raise UserError("a path network trains on complete rows; x has missing (NaN) cells")
        exact = torch.where(path > dim, path - dim - 1, path)
        if drawn.dim() == 2:
            steps = exact[:, None]
        elif lattice.trains_exact_stream(model.protocol):           # the exact path beside every drawn budget
            steps = torch.stack([exact, drawn[:, 1]], 1)
        else:                                                       # each row is one walk (natural-strided)
            steps = drawn[:, 1:]
        params = self.edge_params(model, x, path, steps)                          # [B, S, D, P]
        on = (path >= 0) & (path != dim)
        S = steps.shape[1]
        nll = -model.head.log_prob(params.flatten(0, 1), x.repeat_interleave(S, 0)).view(len(x), S, dim)
        return (nll * on[:, None]).sum((1, 2)) / (S * dim)

    def path_log_prob(self, model, x, given, target, estimator, num_draws, generator):
        path = lattice.paths(given, target, model.protocol, generator)
        x = torch.where(given | target, x, model.head.blank(x))
        log_p = model.head.log_prob(self.edge_params(model, x, path), x)   # [B, D]
        if estimator == "exact":
            return (log_p * target).sum(-1)
        # The pass already holds every edge: the draws pick steps, no new passes. Edges by
        # step [B, D + 1] (column D: off the path), then the draws in chunks of bounded size.
        length = target.sum(-1)
        D = x.shape[1]
        by_step = log_p.new_zeros(len(x), D + 1).scatter(1, torch.where(target, path, D), log_p * target)
        total = log_p.new_zeros(len(x))
        chunk = max(1, DRAW_CHUNK // max(len(x), 1))
        for done in range(0, num_draws, chunk):
            u = torch.rand(min(chunk, num_draws - done), len(x), generator=generator, device=x.device)
            total += by_step.gather(1, (u * length).long().T).sum(1)
        return length * total / num_draws

    @staticmethod
    def _path(given, target, rank):
        start = given.sum(-1, keepdim=True)
        return torch.where(given, lattice.GIVEN, torch.where(target, rank - start, given.shape[-1]))

    def policy_log_prob(self, model, x, given, target, rank, bounds):
        """One pass: every target's query sees o and the steps before its own."""
        path = self._path(given, target, rank)
        step = lattice.path_steps(path, bounds - given.sum(-1, keepdim=True))
        x = torch.where(given | target, x, model.head.blank(x))
        return (model.head.log_prob(self.edge_params(model, x, path, step), x) * target).sum(-1)

    @torch.no_grad()
    def conditionals(self, model, x, given, rank, bounds):
        """`begin` encodes o; step k appends the previous block's values (which the caller has
        written into x) and predicts its own block (padded to the widest row's) in one pass
        through the blocks."""
        network, dim = model.network, x.shape[1]
        if not len(x):
            return                   # no rows: no steps (a caller may probe the walk on zero rows)
        order = rank.argsort(-1)
        cache = network.begin(torch.where(given, x, model.head.blank(x)), given)
        drawn = None                 # the previous step's block, appended with the next step's queries
        for k in range(bounds.shape[1] - 1):
            low, high = bounds[:, k, None], bounds[:, k + 1, None]
            width = int((high - low).max())
            if width == 0:
                continue
            place = low + torch.arange(width, device=x.device)
            valid = place < high
            var = order.gather(1, place.clamp(max=dim - 1))
            if drawn is None:
                params = network.predict(cache, var)
            else:
                value = x.gather(1, drawn[0])
                params = network.extend(cache, drawn[0], torch.where(drawn[1], value, model.head.blank(value)),
                                        drawn[1], then=var)
            rows, slot = valid.nonzero(as_tuple=True)
            yield rows, var[rows, slot], params[rows, slot]
            drawn = var, valid

    def conditional_mean(self, model, x, observed):
        """One pass with every unobserved variable in one step (K = 1): p(x_j | x_observed) for all j."""
        path = lattice.paths(observed, ~observed, model.protocol)
        params = self.edge_params(model, torch.where(observed, x, model.head.blank(x)), path, torch.zeros_like(path))
        return torch.where(observed, x, model.head.point_estimate(params).to(x.dtype))

    def step_losses(self, model, x, given, rank):
        """The content of every target is encoded once (one causal pass over the cache); then
        query t asks every later place j from o ∪ u_<t: m²/2 query slots, no content recomputed."""
        network = model.network
        observed = int(given[0].sum()) if len(x) else 0
        path = rank.argsort(-1)[:, observed:]
        m = path.shape[1]
        cache = network.begin(torch.where(given, x, model.head.blank(x)), given)
        network.extend(cache, path, x.gather(1, path), torch.ones_like(path, dtype=torch.bool))
        out = torch.zeros(len(x), m, m, dtype=torch.float64, device=x.device)
        for t in range(m):
            var = path[:, t:]
            params = network.predict(cache, var, torch.full_like(var, t))
            out[:, t, t:] = -model.head.log_prob(params, x.gather(1, var), var).double()
        return out


WALKS = {"node": NodeWalk(), "path": PathWalk()}


def _check_generator(generator, device: torch.device) -> None:
    """A call's generator: None (torch's global one) or a torch.Generator on `device`'s kind,
    so that a wrong argument is a one-line error, not torch's deep in a draw."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise UserError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator.device.type != device.type:
        raise UserError(f"the generator draws on {generator.device}, the model runs on {device}: "
                        f"make it with torch.Generator(device={device.type!r})")


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

    @property
    def device(self) -> torch.device:
        """Where the model's weights live (its first parameter's device; a network of buffers
        alone, such as an exact oracle, its first buffer's; the CPU with neither): where its
        inputs and generators must be."""
        return next(itertools.chain(self.parameters(), self.buffers()), torch.empty(0)).device

    # ---------------------------------------------------------------- inputs
    def _check_x(self, x: torch.Tensor, name: str = "x", generator=None) -> torch.Tensor:
        """x `[B, D]` as the walks take it (integer levels as int64), checked against the
        model: shape, device, and the generator any draw of the call uses."""
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise UserError(f"{name} must be a tensor [batch, D], got {shape}")
        if x.shape[1] != self.dim:
            raise UserError(f"{name} has {x.shape[1]} variables per row, the network expects {self.dim}")
        device = self.device
        if x.device != device:
            raise UserError(f"{name} is on {x.device}, the model on {device}: move one of them with .to()")
        _check_generator(generator, device)
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
        _check_generator(generator, torch.device("cpu") if device is None else torch.device(device))
        return self.walk.draw_training(self, batch, generator, device)

    def loss(self, x: torch.Tensor, drawn: torch.Tensor | None = None, generator=None) -> torch.Tensor:
        """Mean training loss over rows, in nats per variable.

        `drawn` are this batch's nodes or paths (`draw_training`; drawn here when None).
        Node networks: per row, the mean NLL over the node's targets. Path networks: per
        row, the NLL summed over the path's edges / D. NaN cells of continuous data are
        missing: never observed, never targets.
        """
        x = self._check_x(x, generator=generator)
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
        check_count(num_draws, "num_draws")
        if (target & given).any():
            raise UserError("target and given overlap: a variable cannot be both asked and observed")
        if not target.any(-1).all():
            raise UserError("the target mask is empty for some rows; a query needs at least one variable")
        self._check_values(x, target | given)
        if policy is not None:
            rank, bounds = self._plan(given, target, policy, generator)
            return self.walk.policy_log_prob(self, x, given, target, rank, bounds)
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
        x = self._check_x(x, generator=generator)
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
        x = self._check_x(x, generator=generator)
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
        protocol order, one variable per step (a node network's pass, or one step of a path
        network's key/value cache). An all-False mask samples unconditionally; observed
        values are returned unchanged. steps=K or policy=[0, b_1, …, b_K]: K steps, each
        drawing a block of the path at once, independently, from what the steps before it
        drew (`conditionals`); progress: a bar counting them."""
        x = self._check_x(x, generator=generator)
        observed = self._check_mask(observed, x, "observed")
        check_temperature(temperature)
        self._check_values(x, observed, "observed values")
        policy = self._policy(steps, policy)
        x = torch.where(observed, x, self.head.blank(x))
        rank, bounds = self._plan(observed, ~observed, policy, generator)
        return self.walk.sample(self, x, observed, rank, bounds, temperature, generator, progress)

    def conditionals(self, x: torch.Tensor, target: torch.Tensor, given: torch.Tensor | None = None,
                     policy=None, generator=None):
        """The walk from node `given` (default ∅) to `given ∪ target` along the protocol, step by
        step: a generator of `(rows [M], var [M], params [M, P])`, the variables step k visits
        (row and index) and the head's parameters of p(x_var | x_given, x of earlier steps).
        Without a policy every step visits one variable (the exact likelihood's path); a
        policy (step boundaries, `anyorder.budget`; rescaled to each row's |target|) visits
        a block per step. The caller writes the values of each step's variables into x (in
        place) before asking for the next step; the walk reads x only at `given` and at
        variables of earlier steps. Sampling, K-step likelihoods and compression all walk
        this, so they cannot drift apart; a node network takes one pass per step, a path
        network one cache step."""
        x = self._check_x(x, generator=generator)
        target = self._check_mask(target, x, "target")
        given = torch.zeros_like(target) if given is None else self._check_mask(given, x, "given")
        if (target & given).any():
            raise UserError("target and given overlap: a variable cannot be both asked and observed")
        policy = None if policy is None else budget.check_policy(policy)
        rank, bounds = self._plan(given, target, policy, generator)
        return self.walk.conditionals(self, x, given, rank, bounds)

    def _plan(self, given: torch.Tensor, target: torch.Tensor, policy: torch.Tensor | None, generator=None):
        """(rank `[B, D]`, bounds `[B, K+1]`) of a walk (see `Walk`): the order the walk takes
        (`lattice.walk_ranks`: the protocol's, or natural-strided's per budget) and each step's
        absolute path places; without a policy one variable per step."""
        length = target.sum(-1)
        if policy is None:   # one variable per step; at least one (empty) step when nothing is asked
            policy = torch.arange(max(int(length.max()) if len(length) else 0, 1) + 1)
        bounds = budget.row_boundaries(policy, length)
        return lattice.walk_ranks(given, target, self.protocol, bounds, generator), given.sum(-1, keepdim=True) + bounds

    @torch.no_grad()
    def conditional_mean(self, x: torch.Tensor, observed: torch.Tensor, generator=None) -> torch.Tensor:
        """Every unobserved x_j replaced by the head's point estimate of p(x_j | x_observed)
        (the one-pass imputation: the mean, or the mode of a discrete variable); `[B, D]` -> `[B, D]`."""
        x = self._check_x(x, generator=generator)
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
        if estimator != "exact":
            raise UserError("steps / policy give the exact likelihood of the K-step sampler; "
                            "use estimator='exact'")
        if steps is not None:
            steps = check_count(steps, "steps")
        if policy is None:
            return torch.arange(steps + 1)
        policy = budget.check_policy(policy)
        if steps is not None and steps != len(policy) - 1:
            raise UserError(f"steps={steps} but the policy has {len(policy) - 1} steps; pass one of them")
        return policy
