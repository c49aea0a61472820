"""The lattice samplers against exact distributions enumerated independently here."""

import itertools
import math
from collections import defaultdict

import pytest
import torch

from anyorder import lattice
from anyorder.errors import UserError

DRAWS = 200_000


def protocol_order(elements, protocol):
    """The protocol's order of a set, by its written definition (not lattice's keys)."""
    if protocol == "natural":
        return [sorted(elements)]
    if protocol.startswith("strided"):
        stride = int(protocol[8:-1])
        return [sorted(elements, key=lambda i: (i % stride, i // stride))]
    return [list(p) for p in itertools.permutations(elements)]  # random: all equally likely


def subsets(dim, size):
    return [frozenset(c) for c in itertools.combinations(range(dim), size)]


def enumerate_nodes(dim, strategy, protocol="natural", reweight=False, query="card-uniform"):
    """Exact P(s) by walking every query, order and step of the strategy's definition."""
    prob = defaultdict(float)
    if strategy.startswith("mixture"):
        inner, _, share = (strategy[8:-1] if "(" in strategy else "mac").partition(",")
        if share:   # an explicit share of aoarm nodes, each part drawn as it would be alone
            weights = {"aoarm": float(share), inner: 1 - float(share)}
            for part, weight in weights.items():
                for s, p in enumerate_nodes(dim, part, protocol, reweight, query).items():
                    prob[s] += weight * p
            return prob
        # The official code: a pool that is half aoarm and half inner, reweighted as a whole.
        for part in ("aoarm", inner):
            for s, p in enumerate_nodes(dim, part, protocol, False, query).items():
                prob[s] += p / 2
        return _reweighted(prob) if reweight else prob
    if strategy == "aoarm":
        for size in range(dim):
            for s in subsets(dim, size):
                prob[s] += 1 / dim / math.comb(dim, size)
    elif strategy == "mac":
        if query == "card-uniform":
            size_prob = {m: 1 / dim for m in range(1, dim + 1)}
        elif query == "full":
            size_prob = {dim: 1.0}
        else:  # bernoulli(p) given non-empty
            p = float(query[10:-1])
            size_prob = {m: math.comb(dim, m) * p**m * (1 - p) ** (dim - m) for m in range(1, dim + 1)}
            total = sum(size_prob.values())
            size_prob = {m: v / total for m, v in size_prob.items()}
        for m, pm in size_prob.items():
            for e in subsets(dim, m):
                orders = protocol_order(e, protocol)
                for order in orders:
                    for k in range(m):
                        prob[frozenset(order[:k])] += pm / math.comb(dim, m) / len(orders) / m
    else:  # mac-inpaint
        for size in range(dim):
            for o in subsets(dim, size):
                rest = [i for i in range(dim) if i not in o]
                orders = protocol_order(rest, protocol)
                for order in orders:
                    for k in range(dim - size):
                        p = 1 / dim / math.comb(dim, size) / len(orders) / (dim - size)
                        prob[o | frozenset(order[:k])] += p
    return _reweighted(prob) if reweight else prob


def _reweighted(prob):
    """P'(s) ∝ P(s)(|s| + 1)."""
    prob = {s: p * (len(s) + 1) for s, p in prob.items()}
    total = sum(prob.values())
    return {s: p / total for s, p in prob.items()}


def empirical(nodes):
    codes = (nodes.long() << torch.arange(nodes.shape[1])).sum(-1)
    counts = torch.bincount(codes, minlength=2 ** nodes.shape[1]).double()
    return counts / counts.sum()


def tv_distance(nodes, exact):
    truth = torch.zeros(2 ** nodes.shape[1], dtype=torch.float64)
    for s, p in exact.items():
        truth[sum(1 << i for i in s)] += p
    assert truth.sum().item() == pytest.approx(1.0)
    return 0.5 * (empirical(nodes) - truth).abs().sum().item()


CASES = [(s, "natural", "card-uniform") for s in ("aoarm", "mac", "mac-inpaint", "mixture", "mixture(mac-inpaint)",
                                                  "mixture(mac, 0.25)", "mixture(mac-inpaint,0.5)")]
CASES += [("mac", "strided(2)", "card-uniform"), ("mac", "random", "card-uniform"),
          ("mac-inpaint", "strided(3)", "card-uniform"), ("mac", "natural", "full"),
          ("mac", "natural", "bernoulli(0.3)")]


@pytest.mark.parametrize("dim", [4, 5])
@pytest.mark.parametrize("reweight", [False, True])
@pytest.mark.parametrize("strategy,protocol,query", CASES)
def test_training_nodes_match_enumeration(dim, reweight, strategy, protocol, query):
    gen = torch.Generator().manual_seed(1234)
    nodes = lattice.training_nodes(DRAWS, dim, strategy, protocol, reweight, query, generator=gen)
    assert nodes.shape == (DRAWS, dim) and nodes.dtype == torch.bool
    exact = enumerate_nodes(dim, strategy, protocol, reweight, query)
    assert tv_distance(nodes, exact) < 0.01


def test_default_mixture_share_is_the_official_pools():
    # (D+1)/2 = E|s|+1 under aoarm, (D+3)/4 under mac with card-uniform queries.
    for dim in (4, 250):
        assert lattice.mixture_share(dim) == pytest.approx((2 * dim + 2) / (3 * dim + 5))
    assert lattice.mixture_share(250, reweight=False) == 0.5
    exact = enumerate_nodes(5, "mixture", reweight=True)
    uniform = enumerate_nodes(5, "aoarm", reweight=True)
    # aoarm's share of the official law equals mixture_share: P'(s) = share·P'_a(s) + …
    # at the one node that only aoarm can produce under natural mac: {4} (mac never observes D).
    assert exact[frozenset({4})] == pytest.approx(lattice.mixture_share(5) * uniform[frozenset({4})])


def test_reweighting_changes_the_distribution():
    """Guard against a test that cannot fail: the two exact laws are far apart."""
    plain, heavy = enumerate_nodes(5, "mac"), enumerate_nodes(5, "mac", reweight=True)
    gen = torch.Generator().manual_seed(0)
    nodes = lattice.training_nodes(DRAWS, 5, "mac", reweight=False, generator=gen)
    assert tv_distance(nodes, plain) < 0.01
    assert tv_distance(nodes, heavy) > 0.05


def test_natural_mac_never_observes_last_variable():
    nodes = lattice.training_nodes(10_000, 6, "mac", generator=torch.Generator().manual_seed(0))
    assert not nodes[:, -1].any()


def test_card_uniform_queries_are_uniform_in_size_then_set():
    gen = torch.Generator().manual_seed(0)
    masks = lattice.query_masks(DRAWS, 4, "card-uniform", generator=gen)
    exact = {s: 1 / 4 / math.comb(4, len(s)) for m in range(1, 5) for s in subsets(4, m)}
    assert tv_distance(masks, exact) < 0.01


def test_other_query_kinds():
    gen = torch.Generator().manual_seed(0)
    assert lattice.query_masks(3, 7, "full").all()
    bern = lattice.query_masks(50_000, 8, "bernoulli(0.3)", generator=gen)
    assert bern.float().mean().item() == pytest.approx(0.3, abs=0.01)
    evidence = lattice.query_masks(50_000, 5, "inpaint", generator=gen)
    sizes = torch.bincount(evidence.sum(-1), minlength=6).double() / 50_000
    assert sizes[5] == 0 and torch.allclose(sizes[:5], torch.full((5,), 0.2, dtype=torch.float64), atol=0.01)


def test_natural_ranks_observed_then_unobserved_ascending():
    mask = torch.tensor([[False, True, False, True, False], [True, False, False, False, True]])
    assert lattice.ranks(mask, "natural").tolist() == [[2, 0, 3, 1, 4], [0, 2, 3, 4, 1]]


def test_strided_ranks_follow_the_definition():
    dim, stride = 11, 3
    mask = torch.zeros(1, dim, dtype=torch.bool)
    order = lattice.ranks(mask, f"strided({stride})").argsort(-1)[0].tolist()
    assert order == protocol_order(range(dim), f"strided({stride})")[0]


def test_ranks_with_a_then_group():
    given = torch.tensor([[False, False, True, False, False]])
    then = torch.tensor([[True, False, False, False, True]])
    assert lattice.ranks(given, "natural", then=then).tolist() == [[1, 3, 0, 4, 2]]


def test_random_ranks_differ_per_call_and_deterministic_ones_repeat():
    mask = torch.zeros(4, 30, dtype=torch.bool)
    mask[:, ::3] = True
    for protocol in ("natural", "strided(4)"):
        assert torch.equal(lattice.ranks(mask, protocol), lattice.ranks(mask, protocol))
    first, second = lattice.ranks(mask, "random"), lattice.ranks(mask, "random")
    assert not torch.equal(first, second)
    for r in (first, second):  # still observed first
        assert (r[mask] < 10).all() and (r[~mask] >= 10).all()
        assert torch.equal(r.sort(-1).values, torch.arange(30).expand(4, 30))


@pytest.mark.parametrize("protocol", ["natural", "strided(2)"])
def test_protocol_targets_are_the_next_possible_steps(protocol):
    dim = 5
    keys = {i: protocol_order(range(dim), protocol)[0].index(i) for i in range(dim)}
    nodes = torch.tensor([[(c >> i) & 1 for i in range(dim)] for c in range(2 ** dim)], dtype=torch.bool)
    got = lattice.targets(nodes, "protocol", protocol)
    for node, tgt in zip(nodes.tolist(), got.tolist()):
        last = max([keys[i] for i in range(dim) if node[i]], default=-1)
        assert tgt == [not node[j] and keys[j] > last for j in range(dim)]
    assert torch.equal(lattice.targets(nodes, "all"), ~nodes)
    assert torch.equal(lattice.targets(nodes, "protocol", "random"), ~nodes)


@pytest.mark.parametrize("call,message", [
    (lambda: lattice.ranks(torch.zeros(2, 3, dtype=torch.bool), "spiral"), "unknown protocol"),
    (lambda: lattice.ranks(torch.zeros(2, 3, dtype=torch.bool), "strided(0)"), "stride"),
    (lambda: lattice.ranks(torch.zeros(2, 3), "natural"), "bool"),
    (lambda: lattice.query_masks(2, 3, "bernoulli(1.5)"), r"\[0, 1\]"),
    (lambda: lattice.query_masks(2, 3, "bernoulli(x)"), "number"),
    (lambda: lattice.query_masks(2, 0, "full"), "dim"),
    (lambda: lattice.training_nodes(2, 3, "ardm"), "unknown training strategy"),
    (lambda: lattice.training_nodes(2, 3, "mixture(mixture)"), "another mixture"),
    (lambda: lattice.training_nodes(2, 3, "mixture(mac, 1.5)"), r"share .* \[0, 1\]"),
    (lambda: lattice.training_nodes(2, 3, "mixture(mac, half)"), "number"),
    (lambda: lattice.training_nodes(2, 3, "mac", query="inpaint"), "mac-inpaint"),
    (lambda: lattice.targets(torch.zeros(2, 3, dtype=torch.bool), "some"), "unknown targets"),
])
def test_bad_names_and_arguments_are_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("spec,known,what", [
    ("natural(3)", lattice.PROTOCOLS, "takes no argument"), ("full(0.3)", lattice.QUERIES, "takes no argument"),
    ("strided(0)", lattice.PROTOCOLS, "stride S >= 1"), ("strided", lattice.PROTOCOLS, "stride S >= 1"),
    ("strided(2.5)", lattice.PROTOCOLS, "needs a number"), ("bernoulli(1.5)", lattice.QUERIES, r"\[0, 1\]"),
    ("bernoulli(nan)", lattice.QUERIES, r"\[0, 1\]"), ("mixture(mixture)", lattice.STRATEGIES, "another mixture"),
    ("mixture(natural)", lattice.STRATEGIES, "unknown training strategy"), ("aoarm(1)", lattice.STRATEGIES, "no argument"),
])
def test_bad_names_fail_where_they_are_read(spec, known, what):
    with pytest.raises(UserError, match=what):
        lattice.parse_name(spec, known, "name")


def test_sizes_must_be_integers():
    for batch, dim in ((2.5, 4), (2, 4.0), (True, 4)):
        with pytest.raises(UserError, match="integers"):
            lattice.training_nodes(batch, dim)
    assert lattice.training_nodes(0, 4).shape == (0, 4)


def enumerate_paths(dim, protocol, mix):
    """Exact P(given set, ordered targets, ordered packed second targets) of training paths,
    from the mix's definition."""
    joint, marginal, conditional, pair = (w / sum(mix) for w in (*mix, 0)[:4])
    law = defaultdict(float)

    def add(weight, given, target, second=()):
        orders, seconds = protocol_order(target, protocol), protocol_order(second, protocol)
        for order in orders:
            for then in seconds:
                law[(frozenset(given), tuple(order), tuple(then))] += weight / len(orders) / len(seconds)

    add(joint, (), range(dim))
    for size in range(1, dim + 1):
        for e in subsets(dim, size):
            add(marginal / (dim * math.comb(dim, size)), (), e)
            add(pair / (dim * math.comb(dim, size)), (), e, set(range(dim)) - set(e))
    for size in range(dim):
        for o in subsets(dim, size):
            add(conditional / (dim * math.comb(dim, size)), o, set(range(dim)) - o)
    return law


@pytest.mark.parametrize("protocol,mix", [("natural", (1, 1, 1)), ("strided(2)", (2, 1, 0)),
                                          ("random", (0, 1, 3)), ("natural", (1, 0, 1, 2)),
                                          ("random", (0, 1, 0, 1))])
def test_training_paths_match_enumeration(protocol, mix):
    dim = 4
    gen = torch.Generator().manual_seed(7)
    path = lattice.training_paths(DRAWS, dim, protocol, "card-uniform", mix, generator=gen)
    assert path.shape == (DRAWS, dim) and path.dtype == torch.int64
    counts = defaultdict(int)
    for row in path.tolist():
        given = frozenset(j for j in range(dim) if row[j] == lattice.GIVEN)
        order = sorted((j for j in range(dim) if 0 <= row[j] < dim), key=lambda j: row[j])
        second = sorted((j for j in range(dim) if row[j] > dim), key=lambda j: row[j])
        assert sorted(row[j] for j in order) == list(range(len(order)))   # steps 0..m-1
        assert sorted(row[j] - dim - 1 for j in second) == list(range(len(second)))
        counts[(given, tuple(order), tuple(second))] += 1
    exact = enumerate_paths(dim, protocol, mix)
    keys = set(exact) | set(counts)
    tv = 0.5 * sum(abs(counts[k] / DRAWS - exact.get(k, 0.0)) for k in keys)
    assert tv < 0.02


def test_paths_visit_targets_in_protocol_order_after_the_given_set():
    given = torch.tensor([[False, True, False, False, True, False]])
    target = torch.tensor([[True, False, True, True, False, False]])
    assert lattice.paths(given, target, "natural").tolist() == [[0, -1, 1, 2, -1, 6]]
    assert lattice.paths(given, target, "strided(2)").tolist() == [[0, -1, 1, 2, -1, 6]]
    one = torch.arange(6)[None] == 4
    assert lattice.paths(one, ~one, "strided(2)").tolist() == [[0, 2, 1, 3, -1, 4]]   # 0 2 | 1 3 5


def test_bad_path_mix_is_a_clear_error():
    for mix in [(1, 1), (0, 0, 0), (1, -1, 1)]:
        with pytest.raises(ValueError, match="path mix"):
            lattice.training_paths(2, 3, mix=mix)
    with pytest.raises(ValueError, match="inpaint"):
        lattice.training_paths(2, 3, query="inpaint")


def test_natural_strided_training_walks_are_the_walks_queries_take():
    """Every natural-strided training row is a walk a query takes at test time: steps of one
    target each in natural order (the exact path), or K even steps (`budget.row_boundaries`
    of the even policy) over the targets in strided(K) order (`walk_ranks`), K in 1..D/2."""
    from anyorder import budget
    dim = 8
    gen = torch.Generator().manual_seed(3)
    path, steps, exact = lattice.training_walks(4000, dim, "natural-strided(0.25)", mix=(1, 1, 1), generator=gen)
    assert not exact and path.shape == steps.shape == (4000, dim)
    seen = set()
    for row, step in zip(path.tolist(), steps.tolist()):
        targets = sorted((j for j in range(dim) if 0 <= row[j] < dim), key=lambda j: row[j])
        m, k = len(targets), len({step[j] for j in targets})
        if k == m:                                               # one target per step: natural
            assert targets == sorted(targets) and [step[j] for j in targets] == list(range(m))
            continue
        assert 1 <= k <= dim // 2
        assert targets == sorted(targets, key=lambda j: (j % k, j // k))   # strided(K)
        bounds = budget.row_boundaries(torch.arange(k + 1), torch.tensor([m]))[0].tolist()
        assert [step[j] for j in targets] == [sum(b <= t for b in bounds[1:]) for t in range(m)]
        seen.add(k)
    assert seen == set(range(1, dim // 2 + 1))                  # every budget drawn, K = 1 included


def test_natural_strided_share_must_be_a_probability():
    for spec in ("natural-strided(0)", "natural-strided(1.5)", "natural-strided(x)"):
        with pytest.raises(UserError, match="natural-strided"):
            lattice.training_walks(2, 4, spec)
