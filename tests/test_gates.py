"""benchmarks/gates.py: the demonstrators' tasks, and the conditional structure the formation is built for.

The formation's claims (27 joint modes at a segment's start; given every craft's vx the
route is certain, given every craft's vy at most a fair coin per craft between two gates;
an assistant ignoring the operator heads for a gate with probability (5/9)^3) are checked
here by enumerating the demonstrator's first-move mixture, independently of any policy.
"""

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import gates  # noqa: E402


@pytest.fixture
def formation():
    gates.use_task("formation")
    yield
    gates.use_task("pair")


def test_formation_gates_are_every_combination_of_the_crafts_gates(formation):
    assert gates.GATES.shape == (27, 6)
    assert len({tuple(g) for g in gates.GATES}) == 27
    crafts = {tuple(c) for c in gates.CRAFT_GATES}
    assert all(tuple(g[2 * i:2 * i + 2]) in crafts for g in gates.GATES for i in range(3))
    assert gates.ACTION_COLUMNS == ["vx1", "vy1", "vx2", "vy2", "vx3", "vy3"]
    assert gates.ARRANGEMENTS["vx"].tolist() == [True, False] * 3
    # A segment passes when every craft ends within the radius of one of its own gates
    # (brute force over crafts, independently of `passes`' reshaping).
    rng = np.random.default_rng(0)
    offsets = gates.GATES[rng.integers(0, 27, 400)] + rng.normal(0, 0.15, (400, 6))
    expected = [all(min(np.linalg.norm(o[2 * i:2 * i + 2] - c) for c in gates.CRAFT_GATES) < gates.RADIUS
                    for i in range(3)) for o in offsets]
    assert gates.passes(offsets).tolist() == expected
    assert 0 < sum(expected) < 400


def test_the_formations_first_move_conditionals_by_enumeration(formation):
    """At a segment's start the demonstrator's move is a uniform mixture over the 27 gates of
    N(G / 3, 0.05² I). Its conditional given the operator's dims weights gate h by
    N(a_op; G_h,op / 3, 0.05²): computed here for every gate's mean move."""
    means = gates.GATES / gates.STEPS
    # A gate that disagrees moves some operator dim by >= 1/3 more: its weight relative to an
    # agreeing one is at most exp(-(1/3 / 0.05)² / 2) = 2.3e-10, and there are at most 26.
    leak = 26 * np.exp(-0.5 * (1 / 3 / gates.NOISE) ** 2)
    assert len(np.unique(np.round(means, 6), axis=0)) == 27   # 27 joint modes: a mixture needs 27 components
    for dim, mask in gates.ARRANGEMENTS.items():
        op = mask.numpy()
        for g in range(27):
            logw = -0.5 * (((means[g, op] - means[:, op]) / gates.NOISE) ** 2).sum(-1)
            w = np.exp(logw - logw.max())
            w /= w.sum()
            agree = (means[:, op] == means[g, op]).all(-1)
            np.testing.assert_allclose(w[agree], 1 / agree.sum(), rtol=leak)   # uniform over the agreeing gates
            assert w[~agree].sum() < leak
            # given every craft's vx the gate is certain; given vy a coin per craft whose vy is +1
            assert agree.sum() == (1 if dim == "vx" else 2 ** int((gates.GATES[g, 1::2] > 0).sum()))
    # Per craft, one dimension given the other has at most two modes (what a per-dimension
    # mixture of MAC's must hold), while the joint needs one component per combination.
    for a, b in ((0, 1), (1, 0)):
        for value in np.unique(gates.CRAFT_GATES[:, a]):
            assert len(np.unique(gates.CRAFT_GATES[gates.CRAFT_GATES[:, a] == value, b])) <= 2
    # An assistant ignoring the operator draws its dims from another gate, independently:
    # the joint first move heads for a gate with probability (5/9)^3 in both arrangements.
    rows = {tuple(g) for g in gates.GATES}
    for mask in gates.ARRANGEMENTS.values():
        op = mask.numpy()
        hits = sum(tuple(np.where(op, gates.GATES[g], gates.GATES[h])) in rows
                   for g, h in itertools.product(range(27), repeat=2))
        assert hits * 9 ** 3 == 5 ** 3 * 27 ** 2


@pytest.mark.parametrize("task", list(gates.TASKS))
def test_the_demonstrator_passes_every_gate(task):
    gates.use_task(task)
    try:
        passed, (states, actions), where = gates.rollout(gates.demonstrator(1), range(20), paths=True)
        dims = gates.GATES.shape[1]
        assert passed.tolist() == [10.0] * 20
        assert states.shape == (20 * 10 * gates.STEPS, dims + 1) and actions.shape == (len(states), dims)
        assert where.shape == (10 * gates.STEPS + 1, 20, dims)
        assert len(gates.STATE_COLUMNS) == dims + 1 and len(gates.ACTION_COLUMNS) == dims
    finally:
        gates.use_task("pair")
