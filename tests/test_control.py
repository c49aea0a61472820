"""Conditional policies: training nodes by enumeration, the sampler against the policy's own
density, the modes of a known bimodal demonstrator against a regressor's mean, and the
behaviour-cloning baselines (joint mixture, per-dimension bins) against closed forms."""

import itertools
import math

import numpy as np
import pytest
import torch

from anyorder import lattice
from anyorder.control import (ConditionalPolicy, DiffusionPolicy, DiscretePolicy, MeanOfDraws, MixtureDensityPolicy,
                              RegressionPolicy, SharedAutonomy, fit, policy_nodes)
from anyorder.errors import UserError
from anyorder.data.base import Dataset
from anyorder.data.tables import load_table, write_table

STATE = (0.5, -0.2)
MODE = 1 + 0.5 * STATE[0]           # a1 = ±MODE; a2 = 0.5 z + 0.5 s2


def exact_node_probs(state_dim: int, action_dim: int, reweight: bool) -> dict:
    """P(node) by enumeration: (m, k) from the cardinality table, o uniform of size m, then
    the first k other action dimensions in ascending order (the natural protocol)."""
    probs, _ = lattice.node_cardinalities(action_dim, "mac-inpaint", "card-uniform", reweight)
    out = {}
    for m in range(action_dim + 1):
        for given in itertools.combinations(range(action_dim), m):
            rest = [j for j in range(action_dim) if j not in given]
            for k in range(action_dim - m):
                node = (True,) * state_dim + tuple(j in given or j in rest[:k] for j in range(action_dim))
                out[node] = out.get(node, 0.0) + float(probs[m, k]) / math.comb(action_dim, m)
    return out


@pytest.mark.parametrize("reweight", [False, True])
def test_policy_nodes_match_enumeration(reweight):
    exact = exact_node_probs(2, 3, reweight)
    assert abs(sum(exact.values()) - 1) < 1e-9
    nodes = policy_nodes(40000, 2, 3, "natural", reweight, torch.Generator().manual_seed(0))
    assert nodes[:, :2].all()
    rows, counts = torch.unique(nodes, dim=0, return_counts=True)
    empirical = {tuple(r.tolist()): c.item() / len(nodes) for r, c in zip(rows, counts)}
    tv = 0.5 * sum(abs(empirical.get(k, 0.0) - exact.get(k, 0.0)) for k in set(exact) | set(empirical))
    assert tv < 0.02


def test_policy_nodes_keep_the_state_under_other_protocols():
    for protocol in ("random", "strided(2)"):
        nodes = policy_nodes(500, 3, 4, protocol, generator=torch.Generator().manual_seed(1))
        assert nodes[:, :3].all() and (~nodes[:, 3:]).any(-1).all()


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    """A demonstrator with two modes z = ±1 that also decide the second action dimension."""
    rng = np.random.default_rng(0)
    n = 4000
    s = rng.uniform(-1, 1, (n, 2))
    z = rng.choice([-1.0, 1.0], n)
    a1 = z * (1 + 0.5 * s[:, 0]) + 0.1 * rng.standard_normal(n)
    a2 = 0.5 * z + 0.5 * s[:, 1] + 0.1 * rng.standard_normal(n)
    path = tmp_path_factory.mktemp("demos") / "demos.csv"
    write_table(path, ["s1", "s2", "a1", "a2"], np.column_stack([s, a1, a2]))
    return load_table(path, valid_fraction=0.1, test_fraction=0.0)


@pytest.fixture(scope="module")
def trained(demos):
    data = demos
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: extra threads only add overhead
    try:
        torch.manual_seed(0)
        policy = ConditionalPolicy.for_table(data, 2, width=64, depth=2, components=4)
        fit(policy, data, steps=300, batch_size=256, lr=3e-3, seed=0, progress=False)
        regressor = RegressionPolicy.for_table(data, 2, width=64, depth=2)
        fit(regressor, data, steps=300, batch_size=256, lr=3e-3, seed=0, progress=False)
        mdn = MixtureDensityPolicy.for_table(data, 2, width=64, depth=2, components=4)
        fit(mdn, data, steps=300, batch_size=256, lr=3e-3, seed=0, progress=False)
    finally:
        torch.set_num_threads(threads)
    return policy, regressor, mdn


def states(n):
    return torch.tensor(STATE).expand(n, 2).clone()


def tv_to_density(samples: torch.Tensor, log_density, low=-3.0, high=3.0, bins=60, fine=10):
    """TV distance between a sample histogram and a density integrated over the same bins,
    and the density's total mass on [low, high]."""
    width = (high - low) / (bins * fine)
    grid = low + width * (torch.arange(bins * fine) + 0.5)
    mass = (log_density(grid).exp() * width).view(bins, fine).sum(-1)
    counts = torch.histc(samples, bins, low, high) / len(samples)
    return 0.5 * (counts - mass).abs().sum().item(), mass.sum().item()


def test_action_samples_follow_the_policy_density(trained):
    policy, *_ = trained
    n = 8000
    actions = policy.act(states(n), generator=torch.Generator().manual_seed(0))
    nan = torch.full((1,), float("nan"))

    def log_p_first(grid):  # log p(a1 | s), the first step of act's path
        action = torch.stack([grid, nan.expand_as(grid)], -1)
        return policy.log_prob(states(len(grid)), action, target=torch.tensor([[True, False]]).expand(len(grid), 2))

    tv, mass = tv_to_density(actions[:, 0], log_p_first)
    assert abs(mass - 1) < 0.01 and tv < 0.05

    operator = torch.tensor([[MODE, float("nan")]]).expand(n, 2)
    given = torch.tensor([[True, False]]).expand(n, 2)
    filled = policy.act(states(n), operator, given, generator=torch.Generator().manual_seed(1))
    assert torch.equal(filled[:, 0], operator[:, 0])

    def log_p_second(grid):  # log p(a2 | s, a1 = MODE)
        action = torch.stack([torch.full_like(grid, MODE), grid], -1)
        return policy.log_prob(states(len(grid)), action, given=given[:1].expand(len(grid), 2))

    tv, mass = tv_to_density(filled[:, 1], log_p_second)
    assert abs(mass - 1) < 0.01 and tv < 0.05


def test_joint_density_normalises_in_table_units(trained):
    policy, *_ = trained
    side = torch.linspace(-3, 3, 121)
    step = (side[1] - side[0]).item()
    a1, a2 = torch.meshgrid(side, side, indexing="ij")
    action = torch.stack([a1.flatten(), a2.flatten()], -1)
    total = (policy.log_prob(states(len(action)), action).exp().sum() * step * step).item()
    assert abs(total - 1) < 0.02


def test_samples_land_on_the_modes_and_the_regressor_between(trained):
    policy, regressor, _ = trained
    actions = policy.act(states(4000), generator=torch.Generator().manual_seed(2))
    near = (actions[:, 0].abs() - MODE).abs() < 0.35
    upper = (actions[:, 0] > 0).float().mean().item()
    assert near.float().mean() > 0.9 and 0.4 < upper < 0.6
    mean = regressor.act(states(1))[0, 0].item()
    assert abs(mean) < 0.4 and min(abs(mean - MODE), abs(mean + MODE)) > 0.85
    # The assistant follows the operator's mode: a2 | a1 = ±MODE centres on ±0.5 + 0.5 s2.
    for sign in (1.0, -1.0):
        operator = torch.tensor([[sign * MODE, 0.0]]).expand(4000, 2)
        filled = policy.act(states(4000), operator, torch.tensor([[True, False]]).expand(4000, 2),
                            generator=torch.Generator().manual_seed(3))
        assert abs(filled[:, 1].mean().item() - (0.5 * sign + 0.5 * STATE[1])) < 0.1


def test_shared_autonomy_keeps_the_operator_dims(trained):
    policy, regressor, _ = trained
    team = SharedAutonomy(regressor, policy, torch.tensor([False, True]))
    actions = team.act(states(16), generator=torch.Generator().manual_seed(4))
    assert torch.equal(actions[:, 1], regressor.act(states(16))[:, 1])
    assert (actions[:, 0].abs() - MODE).abs().lt(0.5).float().mean() > 0.8


def test_bad_inputs_name_the_argument(trained, demos):
    policy, *_ = trained
    with pytest.raises(ValueError, match="state"):
        policy.act(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="no action was passed"):
        policy.act(states(2), given=torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="given"):
        policy.act(states(2), torch.zeros(2, 2), given=torch.ones(2, 2))
    with pytest.raises(ValueError, match="target"):
        policy.log_prob(states(2), torch.zeros(2, 2), target=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="state_dim"):
        ConditionalPolicy(0, 2)
    with pytest.raises(ValueError, match="weight_decay"):
        fit(policy, None, weight_decay=-1.0)              # refused before the data is read
    with pytest.raises(ValueError, match="bins"):
        DiscretePolicy(2, 2, bins=1)
    for bad in ({"bins": 2.5}, {"components": 0}, {"min_log_scale": float("nan")}, {"min_log_scale": "-3"},
                {"min_log_scale": 1.0}):
        kind = DiscretePolicy if "bins" in bad else MixtureDensityPolicy
        with pytest.raises(UserError, match="bins|components|min_log_scale"):
            kind(2, 2, **bad)
    with pytest.raises(UserError, match="state_dim must lie in"):
        ConditionalPolicy.for_table(demos, 2.5)
    with pytest.raises(UserError, match="batch_size must be an integer"):
        fit(policy, None, batch_size=2.5)
    with pytest.raises(UserError, match="operator_dims has 3 entries, the action 2"):
        SharedAutonomy(Fixed(torch.zeros(2, 2)), policy, torch.tensor([True, False, False])).act(states(2))
    with pytest.raises(UserError, match="assistant must be a policy"):
        SharedAutonomy(Fixed(torch.zeros(2, 2)), "mac", torch.tensor([True, False]))
    with pytest.raises(UserError, match="policy must be a policy"):
        MeanOfDraws("mac", 4)


def test_an_empty_batch_of_states_gives_no_actions(trained, demos):
    policies = (*trained, DiscretePolicy.for_table(demos, 2, width=8, depth=1),
                DiffusionPolicy.for_table(demos, 2, width=8, depth=1))
    for policy in (*policies, MeanOfDraws(trained[0], 3)):
        assert policy.act(torch.zeros(0, 2)).shape == (0, 2)


class Fixed:
    """An operator that always proposes the same actions."""

    def __init__(self, actions):
        self.actions = actions

    def act(self, state, action=None, given=None, generator=None):
        return self.actions


def test_independent_assistant_ignores_the_operator(trained):
    """a2 | a1 = +MODE centres on 0.5 + 0.5 s2; p(a2 | s) alone, an even mixture of ±0.5, on 0.5 s2."""
    policy, *_ = trained
    operator = torch.tensor([[MODE, 0.0]]).expand(4000, 2)
    for conditioned, centre in ((True, 0.5 + 0.5 * STATE[1]), (False, 0.5 * STATE[1])):
        team = SharedAutonomy(Fixed(operator), policy, torch.tensor([True, False]), conditioned=conditioned)
        filled = team.act(states(4000), generator=torch.Generator().manual_seed(5))
        assert torch.equal(filled[:, 0], operator[:, 0])
        assert abs(filled[:, 1].mean().item() - centre) < 0.1


def test_mean_of_draws_estimates_the_policy_mean(trained):
    """The mean decoding against E[a | s] and E[a2 | s, a1] integrated from the policy's own
    density (Riemann sums on [-3, 3], normalised by their mass): within 5 standard errors of
    a mean of `draws` draws (the variance from the same integral) plus the grid's 0.01."""
    policy, *_ = trained
    draws = 4000
    side = torch.linspace(-3, 3, 161)
    a1, a2 = torch.meshgrid(side, side, indexing="ij")
    action = torch.stack([a1.flatten(), a2.flatten()], -1)
    p = policy.log_prob(states(len(action)), action).exp().unsqueeze(-1)
    mean = (p * action).sum(0) / p.sum()
    var = (p * (action - mean).square()).sum(0) / p.sum()
    decoded = MeanOfDraws(policy, draws).act(states(1), generator=torch.Generator().manual_seed(8))[0]
    assert ((decoded - mean).abs() < 5 * (var / draws).sqrt() + 0.01).all()
    assert abs(mean[0].item()) < 0.5 * MODE            # the modes' midpoint, where no draw lands

    operator = torch.tensor([[MODE, float("nan")]])
    given = torch.tensor([[True, False]])
    p = policy.log_prob(states(len(side)), torch.stack([torch.full_like(side, MODE), side], -1),
                        given.expand(len(side), 2)).exp()
    mean = (p * side).sum() / p.sum()
    var = (p * (side - mean).square()).sum() / p.sum()
    decoded = MeanOfDraws(policy, draws).act(states(1), operator, given, torch.Generator().manual_seed(9))[0]
    assert decoded[0].item() == MODE and abs(decoded[1] - mean) < 5 * (var / draws).sqrt() + 0.01

    one = MeanOfDraws(policy, 1).act(states(5), generator=torch.Generator().manual_seed(10))
    assert torch.equal(one, policy.act(states(5), generator=torch.Generator().manual_seed(10)))
    with pytest.raises(UserError, match="draws"):
        MeanOfDraws(policy, 0)


def test_mixture_density_normalises_jointly_and_conditionally(trained):
    """Riemann sums of the joint and of the conditional density on [-3, 3] (the modes sit
    within 1.8, scales near 0.1, so the mass outside is < 1e-6)."""
    *_, mdn = trained
    side = torch.linspace(-3, 3, 161)
    step = (side[1] - side[0]).item()
    a1, a2 = torch.meshgrid(side, side, indexing="ij")
    action = torch.stack([a1.flatten(), a2.flatten()], -1)
    assert abs(mdn.log_prob(states(len(action)), action).exp().sum().item() * step ** 2 - 1) < 0.02
    action = torch.stack([torch.full_like(side, MODE), side], -1)
    given = torch.tensor([[True, False]]).expand(len(side), 2)
    assert abs(mdn.log_prob(states(len(side)), action, given).exp().sum().item() * step - 1) < 0.01


def test_mixture_density_conditions_on_the_given_dims(trained):
    """Draws of a2 given a1 follow the mixture's exact conditional and the operator's mode."""
    *_, mdn = trained
    n = 8000
    for sign in (1.0, -1.0):
        operator = torch.tensor([[sign * MODE, float("nan")]]).expand(n, 2)
        given = torch.tensor([[True, False]]).expand(n, 2)
        filled = mdn.act(states(n), operator, given, generator=torch.Generator().manual_seed(6))
        assert torch.equal(filled[:, 0], operator[:, 0])

        def log_density(grid):
            action = torch.stack([torch.full_like(grid, sign * MODE), grid], -1)
            return mdn.log_prob(states(len(grid)), action, given[:1].expand(len(grid), 2))

        tv, mass = tv_to_density(filled[:, 1], log_density)
        assert abs(mass - 1) < 0.01 and tv < 0.05
        assert abs(filled[:, 1].mean().item() - (0.5 * sign + 0.5 * STATE[1])) < 0.1
    joint = mdn.act(states(n), generator=torch.Generator().manual_seed(7))
    assert ((joint[:, 0] > 0) == (joint[:, 1] > 0.5 * STATE[1])).float().mean() > 0.95


def test_mixture_density_temperature_scales_the_component_noise(trained):
    """With the same generator, a draw at temperature t picks the same component and noise as
    at 1, so its offset from that component's mean is exactly t times as large (float32
    rounding of values near 2, well under 1e-5); temperature 0 gives the component's mean."""
    *_, mdn = trained
    n = 500
    draw = {t: mdn.act(states(n), generator=torch.Generator().manual_seed(8), temperature=t) for t in (0.0, 0.3, 1.0)}
    x, _ = mdn.inputs(states(n))
    _, means, _ = mdn.mixture(x)
    means = mdn.outputs(torch.cat([x[:, :2, None].expand(-1, -1, means.shape[-1]), means], 1).transpose(1, 2)
                        .flatten(0, 1)).view(n, -1, 2)            # [n, K, A] in table units
    assert ((draw[0.0][:, None] - means).abs().amax(-1).amin(-1) < 1e-5).all()
    assert torch.allclose(draw[0.3] - draw[0.0], 0.3 * (draw[1.0] - draw[0.0]), atol=1e-5)
    with pytest.raises(UserError, match="temperature"):
        mdn.act(states(2), temperature=-1.0)


def test_diffusion_policy_draws_the_coupled_modes_and_inpaints(demos):
    """Trained briefly on the two-mode demonstrator: joint draws put a1 and a2 on the same
    mode (their signs agree; a mean between the modes would not), and given a1 on one mode,
    inpainting draws a2 near that mode's value (0.5 z + 0.5 s2), the given a1 copied exactly.
    The thresholds leave room for a short training: the modes sit 1 apart in a2, 0.1 noise."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        policy = DiffusionPolicy.for_table(demos, 2, width=64, depth=2, steps=20)
        fit(policy, demos, steps=600, batch_size=256, lr=3e-3, seed=0, progress=False)
        n = 2000
        joint = policy.act(states(n), generator=torch.Generator().manual_seed(1))
        assert ((joint[:, 0] > 0) == (joint[:, 1] > 0.5 * STATE[1])).float().mean() > 0.9
        assert (joint[:, 0].abs() - MODE).abs().median() < 0.2
        for sign in (1.0, -1.0):
            operator = torch.tensor([[sign * MODE, float("nan")]]).expand(n, 2)
            given = torch.tensor([[True, False]]).expand(n, 2)
            filled = policy.act(states(n), operator, given, generator=torch.Generator().manual_seed(2))
            assert torch.equal(filled[:, 0], operator[:, 0])
            assert (filled[:, 1] - (0.5 * sign + 0.5 * STATE[1])).abs().median() < 0.2
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(UserError, match="steps"):
        DiffusionPolicy(2, 2, steps=0)


def test_discrete_policy_recovers_known_bin_masses():
    """A state-blind demonstrator with known bin masses: the cross-entropy optimum is the
    empirical bin frequency, which lies within 0.03 TV of the truth (4000 draws over 6 bins:
    E[TV] <= 0.5 Σ sqrt(p(1-p)/n) < 0.02); training lands within 0.03 of it."""
    rng = np.random.default_rng(1)
    masses = np.array([0.05, 0.4, 0.05, 0.1, 0.3, 0.1])
    n = 4000
    bins = rng.choice(6, n, p=masses)
    a = (bins + rng.random(n)) / 6 * 2 - 1               # uniform inside bins of [-1, 1]
    s = rng.uniform(-1, 1, n)
    rows = torch.tensor(np.column_stack([s, a]), dtype=torch.float32)
    data = Dataset("table", 2, None, rows, {}, {"columns": ["s", "a"]})  # units = the bins' units
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        policy = DiscretePolicy.for_table(data, 1, width=32, depth=1, bins=6, bound=1.0)
        fit(policy, data, steps=200, batch_size=512, lr=1e-2, seed=0, progress=False)
    finally:
        torch.set_num_threads(threads)
    grid = torch.linspace(-1, 1, 601)[:-1] + 1 / 600
    log_p = policy.log_prob(torch.zeros(len(grid), 1), grid.unsqueeze(-1))
    learned = (log_p.detach().exp() / 300).view(6, 100).sum(-1).numpy()
    assert abs(learned.sum() - 1) < 1e-4
    assert 0.5 * np.abs(learned - masses).sum() < 0.05
    draws = policy.act(torch.zeros(n, 1), generator=torch.Generator().manual_seed(0))[:, 0].numpy()
    assert draws.min() >= -1 and draws.max() <= 1
    drawn = np.bincount(((draws + 1) / 2 * 6).astype(int).clip(0, 5), minlength=6) / n
    assert 0.5 * np.abs(drawn - learned).sum() < 0.03
