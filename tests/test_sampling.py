"""Categorical draws at any number of categories (training nodes of wide tables), against
the exact law."""

import math

import pytest
import torch

from anyorder import lattice
from anyorder.errors import UserError
from anyorder.sampling import categorical


def _within_five_sigma(counts: torch.Tensor, probs: torch.Tensor, n: int) -> bool:
    """Every count within 5 binomial standard deviations (+1 for discreteness) of n·p: a
    correct sampler fails this for a given cell with probability below 1e-6."""
    sigma = (n * probs * (1 - probs)).sqrt()
    return bool(((counts - n * probs).abs() <= 5 * sigma + 1).all())


def test_draws_follow_the_weights_exactly_including_tiny_and_zero_ones():
    weights = torch.tensor([0.0, 1e-3, 0.5, 0.0, 2.0, 1e-2, 3.0, 0.0], dtype=torch.float64)
    n = 400_000
    draws = categorical(weights, n, torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=len(weights)).double()
    probs = weights / weights.sum()
    assert counts[weights == 0].sum() == 0
    assert _within_five_sigma(counts, probs, n)
    # TV against the exact law, bounded by its expectation's 5σ-style bound Σ 5·sd/n / 2.
    tv = 0.5 * (counts / n - probs).abs().sum().item()
    assert tv <= 0.5 * sum(5 * math.sqrt(p * (1 - p) / n) + 1 / n for p in probs.tolist())


def test_more_categories_than_multinomial_takes():
    size = 2 ** 24 + 7
    weights = torch.zeros(size)
    weights[[3, 2 ** 24 + 2, size - 1]] = torch.tensor([1.0, 2.0, 1.0])
    with pytest.raises(RuntimeError):
        torch.multinomial(weights, 1, replacement=True)
    n = 40_000
    draws = categorical(weights, n, torch.Generator().manual_seed(1))
    assert set(draws.unique().tolist()) == {3, 2 ** 24 + 2, size - 1}
    counts = torch.stack([(draws == i).sum() for i in (3, 2 ** 24 + 2, size - 1)]).double()
    assert _within_five_sigma(counts, torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64), n)


def test_training_nodes_of_wide_tables():
    """4100 columns: (|o|, k) is drawn from 4101 × 4100 cells, more than 2^24."""
    gen = torch.Generator().manual_seed(0)
    nodes = lattice.training_nodes(16, 4100, "mac", generator=gen)
    assert nodes.shape == (16, 4100) and (nodes.sum(-1) < 4100).all()


def test_node_sizes_follow_the_reweighted_table():
    """|s| of MAC's training nodes against the exact law `node_cardinalities` gives (D = 6)."""
    dim, n = 6, 200_000
    probs, sizes = lattice.node_cardinalities(dim, "mac", "card-uniform", True)
    exact = torch.zeros(dim, dtype=torch.float64).index_add_(0, sizes.flatten().long(), probs.flatten().double())
    nodes = lattice.training_nodes(n, dim, "mac", generator=torch.Generator().manual_seed(3))
    counts = torch.bincount(nodes.sum(-1), minlength=dim).double()
    assert _within_five_sigma(counts, exact, n)


@pytest.mark.parametrize("weights", [[], [0.0, 0.0], [1.0, -1.0], [1.0, float("nan")], [float("inf")]])
def test_bad_weights(weights):
    with pytest.raises(UserError):
        categorical(torch.tensor(weights), 3)
