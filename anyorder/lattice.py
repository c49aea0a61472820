"""The binary lattice of an AO-ARM: query masks, protocols, training nodes and paths, targets.

A mask/node is a `torch.bool [B, D]` tensor, True = observed / in the set. Everything here
is vectorised over the batch and the variables and runs on any device; randomness comes
from an optional `torch.Generator` (on the same device as the result). Protocols and
distributions are named by strings, with an argument in parentheses where one is needed:
"strided(16)", "bernoulli(0.3)", "mixture(mac-inpaint)". A path `[B, D]` int64 marks each
variable GIVEN (−1, in the evidence o), t (the t-th target u_t, t = 0, 1, …) or D (off the path);
a training path may pack a second sequence of targets after the same o, marked D + 1 + t
(`training_paths`' marginal pairs): the two sequences never see each other. A path's steps
`[B, D]` int64 give each target the step that draws it (`path_steps` from step boundaries,
`training_steps` at random for training), so a path network learns every step budget.
"""

from __future__ import annotations

import functools
import re

import torch

from .errors import UserError, is_integer
from .sampling import cumulative, draw

QUERIES = ("card-uniform", "full", "bernoulli", "inpaint")
PROTOCOLS = ("natural", "strided", "random", "natural-strided")
STRATEGIES = ("aoarm", "mac", "mac-inpaint", "mixture")
TARGETS = ("all", "protocol")
GIVEN = -1


def parse_name(spec: str, known: tuple[str, ...], what: str) -> tuple[str, str | None]:
    """"name(arg)" -> ("name", "arg"); "name" -> ("name", None). Unknown names, arguments
    given to names that take none, and bad arguments (`strided(0)`, `bernoulli(2)`,
    `mixture(mixture)`) are errors, so a spec fails where it is first read."""
    match = re.fullmatch(r"\s*([a-z-]+)\s*(?:\(\s*([^()]*?)\s*\))?\s*", str(spec))
    if match is None or match.group(1) not in known:
        raise UserError(f"unknown {what} {spec!r}; expected one of {', '.join(known)}")
    name, arg = match.groups()
    if name in _ARGUMENTS:
        _ARGUMENTS[name](arg, spec)
    elif arg is not None:
        raise UserError(f"the {what} {name!r} takes no argument, got {spec!r}")
    return name, arg


def _number(arg: str | None, default: float, what: str, cast=float):
    if arg is None:
        return default
    try:
        return cast(arg)
    except ValueError:
        raise UserError(f"{what} needs a number in parentheses, got {arg!r}") from None


def _check_stride(arg: str | None, spec: str) -> None:
    if arg is None or _number(arg, 0, "strided", int) < 1:
        raise UserError(f"strided(S) needs a stride S >= 1, got {spec!r}")


def _check_probability(arg: str | None, spec: str) -> None:
    if not 0 <= _number(arg, 0.5, "bernoulli") <= 1:
        raise UserError(f"bernoulli probability must lie in [0, 1], got {spec!r}")


def _check_share(arg: str | None, spec: str) -> None:
    if not 0 < _number(arg, NATURAL_SHARE, "natural-strided") <= 1:
        raise UserError(f"natural-strided(p) needs a share p of natural rows in (0, 1], got {spec!r}")


def _check_mixture(arg: str | None, spec: str) -> None:
    mixture_parts(arg)


_ARGUMENTS = {"strided": _check_stride, "bernoulli": _check_probability, "mixture": _check_mixture,
              "natural-strided": _check_share}
NATURAL_SHARE = 0.5         # natural-strided's default share of exact natural training rows


def _check_size(batch: int, dim: int) -> None:
    if not (is_integer(batch) and is_integer(dim)):
        raise UserError(f"batch and dim must be integers, got batch={batch!r}, dim={dim!r}")
    if batch < 0 or dim < 1:
        raise UserError(f"need batch >= 0 and dim >= 1, got batch={batch}, dim={dim}")


def random_ranks(batch: int, dim: int, generator=None, device=None) -> torch.Tensor:
    """A uniformly random permutation of 0..D-1 per row, `[B, D]` int64."""
    scores = torch.rand(batch, dim, generator=generator, device=device)
    return scores.argsort(-1).argsort(-1)


def uniform_subsets(sizes: torch.Tensor, dim: int, generator=None) -> torch.Tensor:
    """Uniformly random subsets of the given sizes `[B]` -> mask `[B, D]`."""
    return random_ranks(len(sizes), dim, generator, sizes.device) < sizes.unsqueeze(-1)


def query_masks(batch: int, dim: int, kind: str = "card-uniform", generator=None,
                device=None) -> torch.Tensor:
    """Draw query masks from a query distribution M, `[B, D]` bool: card-uniform (|e| ~
    U{1..D}, then e uniform of that size), full (e = all), bernoulli(p), inpaint.

    For marginal queries the mask is the set e whose likelihood is asked; for "inpaint"
    it is the evidence o (the target is its complement).
    """
    _check_size(batch, dim)
    name, arg = parse_name(kind, QUERIES, "query distribution")
    if name == "full":
        return torch.ones(batch, dim, dtype=torch.bool, device=device)
    if name == "bernoulli":
        return torch.rand(batch, dim, generator=generator, device=device) < _number(arg, 0.5, "bernoulli")
    low = 1 if name == "card-uniform" else 0
    sizes = torch.randint(low, dim + low, (batch,), generator=generator, device=device)
    return uniform_subsets(sizes, dim, generator)


def protocol_keys(dim: int, protocol: str, batch: int = 1, generator=None, device=None) -> torch.Tensor:
    """Each variable's place in the protocol's order, a permutation of 0..D-1, `[B or 1, D]`.
    natural-strided's order is natural: the order of its exact paths (`walk_ranks` gives
    its step budgets theirs)."""
    name, arg = parse_name(protocol, PROTOCOLS, "protocol")
    if name == "random":
        return random_ranks(batch, dim, generator, device)
    index = torch.arange(dim, device=device)
    if name in ("natural", "natural-strided"):
        return index.unsqueeze(0)
    return strided_keys(dim, torch.tensor([int(arg)], device=device))


def strided_keys(dim: int, stride: torch.Tensor) -> torch.Tensor:
    """strided(S)'s order with a stride per row `[B]` -> `[B, D]`: sort by (i mod S, i div S);
    the composite key is unique, so no ties to break. S >= D is the natural order."""
    index = torch.arange(dim, device=stride.device)
    return (index % stride[:, None] * dim + index // stride[:, None]).argsort(-1).argsort(-1)


def ranks(mask: torch.Tensor, protocol: str = "natural", generator=None,
          then: torch.Tensor | None = None) -> torch.Tensor:
    """The decomposition order of a protocol: rank of each variable, `[B, D]` int64.

    Variables in `mask` come first (ranks 0..|mask|-1), then those in `then` (default: all
    the rest), then any others; each group is ordered by the protocol. `random` draws a
    fresh order on every call. A path from node o to o ∪ u visits u in this order.
    """
    if mask.dtype != torch.bool or mask.dim() != 2:
        raise UserError(f"mask must be a bool tensor [B, D], got {mask.dtype} {tuple(mask.shape)}")
    batch, dim = mask.shape
    keys = protocol_keys(dim, protocol, batch, generator, mask.device)
    group = (~mask).long() if then is None else torch.where(mask, 0, torch.where(then, 1, 2))
    return (group * dim + keys).argsort(-1).argsort(-1)


def walk_ranks(given: torch.Tensor, target: torch.Tensor, protocol: str, bounds: torch.Tensor,
               generator=None) -> torch.Tensor:
    """The order `[B, D]` (as `ranks(given, protocol, then=target)`) in which a walk with step
    boundaries `bounds` `[B, K+1]` (path places, `budget.row_boundaries`) visits the targets.

    The protocol's own order, except under natural-strided: a row whose steps each draw at
    most one target walks the natural order (the exact path, K = |u|), a row with a step
    of several targets walks strided(K), K its number of non-empty steps, so the targets one step draws lie K apart (a step
    budget of K even steps over the whole row draws the residues i mod K one by one: those
    drawn together are far apart and nearly independent given what came before). Samplers,
    likelihoods, coders, fitted policies and training all take their order from here."""
    rank = ranks(given, protocol, generator, then=target)
    if parse_name(protocol, PROTOCOLS, "protocol")[0] != "natural-strided":
        return rank
    return _strided_where_spread(rank, given, target, bounds)


def _strided_where_spread(rank: torch.Tensor, given: torch.Tensor, target: torch.Tensor,
                          bounds: torch.Tensor) -> torch.Tensor:
    """natural-strided's walk order from its natural order `rank` (`ranks(given, then=target)`):
    strided(K) on the rows with a step of several targets, `rank` on the others."""
    spread = (bounds.diff(dim=-1) > 1).any(-1)
    if not spread.any():
        return rank
    dim = given.shape[-1]
    stride = (bounds.diff(dim=-1) > 0).sum(-1).clamp(min=1)       # the row's K (its non-empty steps)
    group = torch.where(given, 0, torch.where(target, 1, 2))
    strided = (group * dim + strided_keys(dim, stride)).argsort(-1).argsort(-1)
    return torch.where(spread[:, None], strided, rank)


def _cardinality_table(dim: int, strategy: str, query: str) -> torch.Tensor:
    """P(m, k) `[D+1, D]` over the base-set size m and the number k of path steps taken.

    aoarm: m = 0 (no base set), k = |s| ~ U{0..D-1}. mac: m = |e|, k ~ U{0..m-1}.
    mac-inpaint: m = |o|, k ~ U{0..D-m-1}. Base sets are uniform given their size.
    """
    m = torch.arange(dim + 1, dtype=torch.float64)
    k = torch.arange(dim, dtype=torch.float64)
    if strategy == "aoarm":
        return torch.where(m[:, None] == 0, 1.0 / dim, 0.0).expand(dim + 1, dim).clone()
    if strategy == "mac-inpaint":
        return torch.where(k < dim - m[:, None], 1.0 / (dim * (dim - m[:, None]).clamp(min=1)), 0.0)
    name, arg = parse_name(query, QUERIES, "query distribution")
    if name == "inpaint":
        raise UserError("the 'inpaint' query distribution goes with strategy 'mac-inpaint', not 'mac'")
    if name == "card-uniform":
        p_size = torch.full((dim + 1,), 1.0 / dim, dtype=torch.float64)
        p_size[0] = 0
    elif name == "full":
        p_size = (m == dim).double()
    else:
        p = _number(arg, 0.5, "bernoulli")
        if not 0 < p <= 1:
            raise UserError(f"bernoulli probability for training must lie in (0, 1], got {p}")
        p_size = torch.distributions.Binomial(dim, torch.tensor(p, dtype=torch.float64)).log_prob(m).exp()
        p_size[0] = 0  # an empty query has no edge to train; renormalised below
    table = torch.where(k < m[:, None], p_size[:, None] / m[:, None].clamp(min=1), 0.0)
    return table / table.sum()


def _node_sizes(dim: int, strategy: str) -> torch.Tensor:
    """|s| for every cell of the P(m, k) table."""
    m = torch.arange(dim + 1).unsqueeze(-1)
    k = torch.arange(dim).unsqueeze(0)
    return m + k if strategy == "mac-inpaint" else k.expand(dim + 1, dim)


@functools.lru_cache(maxsize=64)
def node_cardinalities(dim: int, strategy: str = "mac", query: str = "card-uniform",
                       reweight: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The joint law of (base-set size m, steps k) that `training_nodes` samples from.

    Returns (probabilities `[D+1, D]`, node sizes |s| `[D+1, D]`). Since the reweighting
    factor |s|+1 depends on the node only through its size, reweighting the table is exact:
    no resampling pool is needed. Cached: training asks for the same table every step.
    Treat the returned tensors as read-only.
    """
    table = _cardinality_table(dim, strategy, query)
    sizes = _node_sizes(dim, strategy)
    if reweight:
        table = table * (sizes + 1)
    return table / table.sum(), sizes


@functools.lru_cache(maxsize=16)
def node_cdf(dim: int, strategy: str = "mac", query: str = "card-uniform", reweight: bool = True) -> torch.Tensor:
    """`node_cardinalities`' table flattened to running sums (float64 `[(D+1)·D]`), which
    `training_nodes` draws cells (m, k) from by inverse CDF (`sampling.draw`): exact at any
    D, where torch.multinomial refuses the more than 2^24 cells of D > 4095. Cached: every
    training step draws from the same table. Read-only."""
    return cumulative(node_cardinalities(dim, strategy, query, reweight)[0])


def mixture_parts(arg: str | None) -> tuple[str, float | None]:
    """The argument of "mixture(X)" or "mixture(X, share)" -> (X, share or None); X defaults
    to "mac" and share, the fraction of uniform-order (aoarm) nodes, must lie in [0, 1]."""
    inner, _, share = (arg or "mac").partition(",")
    inner = inner.strip()
    if parse_name(inner, STRATEGIES, "training strategy")[0] == "mixture":
        raise UserError(f"mixture(...) cannot contain another mixture, got {arg!r}")
    if not share.strip():
        return inner, None
    value = _number(share.strip(), 0.0, "mixture(X, share)")
    if not 0 <= value <= 1:
        raise UserError(f"the uniform-order share of mixture(X, share) must lie in [0, 1], got {value}")
    return inner, value


@functools.lru_cache(maxsize=64)
def mixture_share(dim: int, inner: str = "mac", query: str = "card-uniform", reweight: bool = True) -> float:
    """The official MAC code's share of uniform-order nodes in mixture(inner).

    It draws a pool that is half aoarm and half `inner` and, with cardinality reweighting,
    resamples it with weights |s|+1, so aoarm ends up with Z_a / (Z_a + Z_inner) of the
    nodes, Z = E[|s|+1] under each half: (2D+2)/(3D+5) ≈ 2/3 for mac with card-uniform
    queries (|s| is about twice as large under aoarm). Without reweighting: 1/2.
    """
    if not reweight:
        return 0.5
    z = [float((probs * (sizes + 1)).sum())
         for probs, sizes in (node_cardinalities(dim, part, query, False) for part in ("aoarm", inner))]
    return z[0] / (z[0] + z[1])


def training_nodes(batch: int, dim: int, strategy: str = "mac", protocol: str = "natural",
                   reweight: bool = True, query: str = "card-uniform", generator=None,
                   device=None) -> torch.Tensor:
    """Draw training nodes s `[B, D]` bool from a strategy's node distribution.

    aoarm: |s| ~ U{0..D-1}, s uniform. mac: e ~ query, s = first k of e in protocol order,
    k ~ U{0..|e|-1}. mac-inpaint: o ~ inpaint, s = o ∪ first k of the rest.
    mixture(X, share): each row is aoarm with probability `share`, else X (default mac);
    without a share, the official code's (`mixture_share`: 1/2 before reweighting, which
    shifts it to ~2/3). With `reweight`, nodes are drawn from P'(s) ∝ P(s)(|s|+1) exactly:
    draw (m, k) from the reweighted table, then the sets given their sizes.
    """
    _check_size(batch, dim)
    name, arg = parse_name(strategy, STRATEGIES, "training strategy")
    if name == "mixture":
        inner, share = mixture_parts(arg)
        if share is None:
            share = mixture_share(dim, inner, query, reweight)
        coin = torch.rand(batch, 1, generator=generator, device=device) < share
        first = training_nodes(batch, dim, "aoarm", protocol, reweight, query, generator, device)
        second = training_nodes(batch, dim, inner, protocol, reweight, query, generator, device)
        return torch.where(coin, first, second)
    parse_name(protocol, PROTOCOLS, "protocol")
    cell = draw(node_cdf(dim, name, query, reweight), batch, generator, device)
    base_size, steps = cell // dim, cell % dim
    if name == "aoarm":
        return uniform_subsets(steps, dim, generator)
    base = uniform_subsets(base_size, dim, generator)
    order = ranks(base, protocol, generator)
    # mac: base is e and s is its first k; mac-inpaint: base is o and s adds k more.
    return order < (steps if name == "mac" else base_size + steps).unsqueeze(-1)


def targets(node: torch.Tensor, kind: str = "all", protocol: str = "natural") -> torch.Tensor:
    """Which edges out of each node the objective trains, `[B, D]` bool.

    all: every unobserved variable. protocol: only those a marginal query's path can take
    next from s, i.e. j ∉ s placed after every member of s in the protocol's order (for
    `natural`: j > max(s)); under `random` every j ∉ s qualifies. Inpainting paths can
    continue to any j ∉ s, so they train with "all".
    """
    name, _ = parse_name(kind, TARGETS, "targets kind")
    if name == "all" or parse_name(protocol, PROTOCOLS, "protocol")[0] == "random":
        return ~node
    keys = protocol_keys(node.shape[-1], protocol, device=node.device).expand_as(node)
    last = torch.where(node, keys, -1).amax(-1, keepdim=True)
    return ~node & (keys > last)


def paths(given: torch.Tensor, target: torch.Tensor, protocol: str = "natural", generator=None) -> torch.Tensor:
    """The protocol's path from node `given` through `target` (`[B, D]` bool each), `[B, D]` int64:
    GIVEN on o, t for the t-th target in the protocol's order (the order `ranks` gives), D elsewhere."""
    rank = ranks(given, protocol, generator, then=target)
    start = given.sum(-1, keepdim=True)
    return torch.where(given, GIVEN, torch.where(target, rank - start, given.shape[-1]))


def training_paths(batch: int, dim: int, protocol: str = "natural", query: str = "card-uniform",
                   mix=(1.0, 1.0, 1.0), generator=None, device=None) -> torch.Tensor:
    """Draw training paths `[B, D]` int64 (see `paths`): MAC's test queries as whole paths.

    Each row is, with probabilities ∝ mix = (joint, marginal, conditional[, pair]): the joint
    (o = ∅, u = every variable), a marginal (o = ∅, u = e ~ `query`), a conditional
    (o ~ inpaint, u = the rest), or a marginal pair: e ~ `query` and its complement ē as two
    packed marginal queries (ē's targets marked D + 1 + t), which fills the row's D slots
    as a joint does, so a pair costs one pass but trains two marginals. Targets follow the
    protocol (`random`: an order per row). Training every edge of these paths, Σ_t NLL / D
    per row is an unbiased estimate of the test objective in nats per variable (a pair
    row: of two marginal queries, ē's size being D − |e|), with no node reweighting.
    """
    given, target, kind, marginal = _training_queries(batch, dim, protocol, query, mix, generator, device)
    drawn = paths(given, target, protocol, generator)
    return drawn if len(mix) == 3 else _pack_pairs(drawn, kind, marginal, protocol, generator)


def _training_queries(batch, dim, protocol, query, mix, generator, device):
    """`training_paths`' draw before ordering: (given, target `[B, D]` bool, kind `[B]` 0..3,
    the marginal set e `[B, D]` whose complement a pair row packs)."""
    _check_size(batch, dim)
    numbers = len(mix) in (3, 4) and all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in mix)
    weights = torch.as_tensor(mix, dtype=torch.float64) if numbers else None
    if weights is None or not torch.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
        raise UserError(f"path mix must be 3 or 4 weights >= 0 (joint, marginal, conditional[, marginal "
                         f"pair]) with a positive sum, got {mix!r}")
    if parse_name(query, QUERIES, "query distribution")[0] == "inpaint":
        raise UserError("the marginal paths' query cannot be 'inpaint'; conditional paths are the mix's third weight")
    parse_name(protocol, PROTOCOLS, "protocol")
    kind = torch.multinomial(weights.float().to(device), batch, replacement=True, generator=generator) \
        if batch else torch.zeros(0, dtype=torch.long, device=device)
    everything = torch.ones(batch, dim, dtype=torch.bool, device=device)
    marginal = query_masks(batch, dim, query, generator, device)
    evidence = query_masks(batch, dim, "inpaint", generator, device)
    given = evidence & (kind == 2)[:, None]
    target = torch.where((kind == 1)[:, None] | (kind == 3)[:, None], marginal, everything) & ~given
    return given, target, kind, marginal


def _pack_pairs(drawn, kind, marginal, protocol, generator):
    """Pair rows (kind 3) take ē's path after e's, its targets marked D + 1 + t."""
    dim = drawn.shape[-1]
    complement = paths(torch.zeros_like(marginal), ~marginal, protocol, generator)
    return torch.where((kind == 3)[:, None] & ~marginal, dim + 1 + complement, drawn)


def trains_exact_stream(protocol: str) -> bool:
    """Whether `training_walks` under `protocol` wants the exact path as a second query stream."""
    return parse_name(protocol, PROTOCOLS, "protocol")[0] != "natural-strided"


def training_walks(batch: int, dim: int, protocol: str = "natural", query: str = "card-uniform",
                   mix=(1.0, 1.0, 1.0), generator=None, device=None) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """What a path network trains on: (paths `[B, D]`, steps `[B, D]`, exact) (see `paths`,
    `path_steps`). exact: the loss adds each row's exact path (one target per step) as a
    second query stream beside the drawn steps.

    A single protocol: `training_paths` and random step boundaries (`training_steps`), both
    streams trained on every row (exact True). natural-strided(p): each row is one walk the
    model takes at test time (exact False): with probability p the exact natural path; else
    a step budget, K = 1 with probability STEP_SHARE_ONE (every p(x_j | x_o)), otherwise K
    log-uniform over 2..D/2, K even steps over the row's targets, in the order `walk_ranks`
    gives such a walk (strided(K)). Pair rows pack their second path on exact rows only."""
    name, arg = parse_name(protocol, PROTOCOLS, "protocol")
    if trains_exact_stream(protocol):
        path = training_paths(batch, dim, protocol, query, mix, generator, device)
        return path, training_steps(path, generator), True
    given, target, kind, marginal = _training_queries(batch, dim, protocol, query, mix, generator, device)
    exact = torch.rand(batch, generator=generator, device=device) < _number(arg, NATURAL_SHARE, "natural-strided")
    top = max(2, dim // 2)
    u = torch.rand(batch, generator=generator, device=device)
    steps = (2 * (top / 2) ** u).round().long().clamp(1, dim)
    steps = torch.where(torch.rand(batch, generator=generator, device=device) < STEP_SHARE_ONE, 1, steps)
    length = target.sum(-1, keepdim=True)
    k = torch.arange(int(steps.max()) + 1 if batch else 1, device=device)
    K = steps[:, None]
    even = torch.where(length >= K, (2 * k * length + K) // (2 * K), torch.minimum(k, length))
    bounds = torch.where(k <= K, even, length)                     # [B, max K + 1]: past a row's K, empty
    natural = ranks(given, protocol, generator, then=target)      # once: the exact rows' order and walk_ranks' base
    rank = torch.where(exact[:, None], natural, _strided_where_spread(natural, given, target, bounds))
    start = given.sum(-1, keepdim=True)
    path = torch.where(given, GIVEN, torch.where(target, rank - start, dim))
    budget_steps = path_steps(path, bounds)
    exact_steps = torch.where((path >= 0) & (path < dim), path, 0)
    path = torch.where(exact[:, None], _pack_pairs(path, kind, marginal, protocol, generator) if len(mix) == 4
                       else path, path)
    packed = torch.where(path > dim, path - dim - 1, exact_steps)
    return path, torch.where(exact[:, None], packed, budget_steps), False


def path_steps(path: torch.Tensor, bounds: torch.Tensor) -> torch.Tensor:
    """The step of each target of `path` `[B, D]` under step boundaries `bounds` `[B, K+1]`
    (path places 0 = b_0 ≤ … ≤ b_K = |u| per row, `budget.row_boundaries`): target u_t is
    in step k when b_k ≤ t < b_{k+1}. `[B, D]` int64, 0 off the targets."""
    place = torch.where((path >= 0) & (path < path.shape[-1]), path, 0)
    return torch.searchsorted(bounds[:, 1:].contiguous(), place, right=True)


STEP_SHARE_ONE = 0.125      # of `training_steps`' rows: every target in one step (K = 1)


def training_steps(path: torch.Tensor, generator=None) -> torch.Tensor:
    """Random step boundaries for training paths `[B, D]` (`training_paths`) -> steps `[B, D]`
    (see `path_steps`; a packed second path gets its own). So that one network serves every
    budget: a share STEP_SHARE_ONE of rows takes all its targets in one step (K = 1: every
    p(x_j | x_o)); the others cut the path before each place with probability D^−U, U ~ U(0,1)
    per row, so the mean step size is log-uniform over 1..D (rate 1: the exact path, K = |u|)."""
    batch, dim = path.shape
    device = path.device
    rate = dim ** -torch.rand(batch, 1, generator=generator, device=device)
    rate = torch.where(torch.rand(batch, 1, generator=generator, device=device) < STEP_SHARE_ONE, 0.0, rate)
    cut = torch.rand(batch, dim, generator=generator, device=device) < rate
    cut[:, 0] = False
    by_place = cut.long().cumsum(-1)                                # the step of each path place
    place = torch.where(path > dim, path - dim - 1, path).clamp(0, dim - 1)
    return torch.where((path >= 0) & (path != dim), by_place.gather(1, place), 0)
