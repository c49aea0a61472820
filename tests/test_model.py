"""AnyOrderModel against brute-force sums, exact tables and its own closed forms."""

import math

import pytest
import torch

from anyorder import lattice
from anyorder.heads import CategoricalHead, MixtureOfGaussiansHead
from anyorder.model import AnyOrderModel, bits_per_dim
from tiny import OracleNet, TinyNet, all_configs, assert_marginals_normalised

D, K = 4, 3


def tiny_model(protocol="natural", **kw):
    return AnyOrderModel(TinyNet(D, K), CategoricalHead(K), protocol=protocol, **kw)


@pytest.mark.parametrize("protocol", ["natural", "strided(2)"])
def test_marginals_sum_to_one_for_every_mask(protocol):
    assert_marginals_normalised(tiny_model(protocol), D, K)


def test_marginals_of_an_inconsistent_model_depend_on_the_path():
    """Guard: the sum-to-one test would pass for any path, but values must differ by path."""
    x = all_configs(D, K)
    with torch.no_grad():
        a = tiny_model("natural").log_prob(x)
        b = tiny_model("strided(2)").log_prob(x)
    assert (a - b).abs().max() > 0.1


@pytest.mark.parametrize("protocol", ["natural", "strided(2)"])
def test_one_step_estimator_is_unbiased(protocol):
    model = tiny_model(protocol)
    gen = torch.Generator().manual_seed(0)
    x = all_configs(D, K)[torch.tensor([5, 40, 77])]
    mask = torch.tensor([[True, True, True, True], [True, False, True, True], [False, True, False, True]])
    with torch.no_grad():
        exact = model.log_prob(x, mask)
        reps = 4000
        draws = model.log_prob(x.repeat(reps, 1), mask.repeat(reps, 1), "one-step", generator=gen)
        draws = draws.view(reps, 3)
        averaged = model.log_prob(x, mask, "one-step", num_draws=reps, generator=gen)
    err = draws.std(0) / math.sqrt(reps)
    assert ((draws.mean(0) - exact).abs() < 4 * err).all()
    assert ((averaged - exact).abs() < 4 * err).all()
    assert (draws.std(0) > 0.05).all()  # the estimator is really random


def test_sample_reproduces_the_chain_conditional():
    model = tiny_model("strided(2)")
    gen = torch.Generator().manual_seed(0)
    x0 = torch.tensor([[2, 0, 1, 1]])
    given = torch.tensor([[False, True, False, False]])
    n = 30_000
    with torch.no_grad():
        drawn = model.sample(x0.repeat(n, 1), given.repeat(n, 1), generator=gen)
        assert (drawn[:, 1] == 0).all()
        configs = all_configs(D, K)
        configs = configs[configs[:, 1] == 0]
        target = ~given.expand_as(configs)
        logp = model.conditional_log_prob(configs, target, given.expand_as(configs))
    truth = logp.double().exp()
    assert truth.sum().item() == pytest.approx(1.0, abs=1e-5)
    codes = (drawn * K ** torch.arange(D)).sum(-1)
    freq = torch.stack([(codes == c).double().mean() for c in (configs * K ** torch.arange(D)).sum(-1)])
    assert 0.5 * (freq - truth).abs().sum().item() < 0.02


def test_zero_temperature_samples_the_mode_step_by_step():
    model = tiny_model()
    x = torch.zeros(5, D, dtype=torch.long)
    observed = torch.zeros(5, D, dtype=torch.bool)
    with torch.no_grad():
        a = model.sample(x, observed, temperature=0.0)
        assert (a == a[0]).all()
        for j in range(D):  # natural order: each value is the argmax given those before it
            node = torch.arange(D) < j
            assert a[0, j] == model(a[:1], node[None])[0, j].argmax()


@pytest.mark.parametrize("protocol", ["natural", "strided(2)", "random"])
def test_an_exact_model_gives_true_marginals_conditionals_and_samples(protocol):
    """With a consistent oracle network every path, method and sampler returns the truth."""
    gen = torch.Generator().manual_seed(3)
    table = torch.rand(K, K, K, K, generator=gen) ** 3
    table /= table.sum()
    model = AnyOrderModel(OracleNet(table), CategoricalHead(K), protocol=protocol)
    x = all_configs(D, K)
    probs = table.flatten()
    given = torch.tensor([True, False, False, True]).expand_as(x)
    target = torch.tensor([False, True, False, False]).expand_as(x)
    with torch.no_grad():
        assert torch.allclose(model.log_prob(x).exp(), probs, atol=1e-6)
        truth = table.sum(2)  # marginal of variables 0, 1, 3
        want = (truth / truth.sum(1, keepdim=True)).log()[x[:, 0], x[:, 1], x[:, 3]]
        for method in ("chain", "ratio"):
            got = model.conditional_log_prob(x, target, given, method=method)
            assert torch.allclose(got, want, atol=1e-4)
        n = 20_000
        drawn = model.sample(torch.zeros(n, D, dtype=torch.long), torch.zeros(n, D, dtype=torch.bool),
                             generator=gen)
    freq = torch.bincount((drawn * K ** torch.arange(D - 1, -1, -1)).sum(-1), minlength=K ** D) / n
    assert 0.5 * (freq - probs).abs().sum().item() < 0.03


def test_loss_is_the_mean_nll_over_targets():
    model = tiny_model(targets="protocol")
    x = all_configs(D, K)[[3, 50, 70]]
    node = torch.tensor([[True, False, False, False], [False, True, False, True], [False, True, False, False]])
    with torch.no_grad():
        got = model.loss(x, node)
        want = []
        for row in range(3):
            nll = -torch.log_softmax(model(x[row:row + 1], node[row:row + 1])[0], -1)
            nll = nll[torch.arange(D), x[row]]
            last = max(i for i in range(D) if node[row, i])
            usable = [j for j in range(D) if j > last]
            want.append(nll[usable].mean() if usable else torch.tensor(0.0))
    assert got.item() == pytest.approx(torch.stack(want).mean().item(), rel=1e-6)


def test_loss_draws_nodes_and_trains():
    gen = torch.Generator().manual_seed(0)
    table = torch.rand(K, K, K, K, generator=gen) ** 4
    table /= table.sum()
    configs = all_configs(D, K)
    net = TinyNet(D, K, width=64)
    net.body[-1].weight.data.div_(20.0)  # the usual initialisation, not the sharp one
    model = AnyOrderModel(net, CategoricalHead(K))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(400):
        batch = configs[torch.multinomial(table.flatten(), 256, replacement=True, generator=gen)]
        loss = model.loss(batch, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        nll = -model.log_prob(all_configs(D, K)).mul(table.flatten()).sum()
    entropy = -(table * table.log()).sum()
    assert entropy.item() - 1e-4 < nll.item() < entropy.item() + 0.2  # uniform would be 4.39


def test_continuous_loss_ignores_missing_cells():
    net = TinyNet(D, 2, out_features=6)
    net.forward = lambda x_in, observed: net.body(torch.cat([x_in, observed.float()] * 2, -1)[:, :D * 3]).view(len(x_in), D, 6)
    model = AnyOrderModel(net, MixtureOfGaussiansHead(2))
    x = torch.randn(8, D)
    x[0, 1] = x[3, 2] = float("nan")
    gen = torch.Generator().manual_seed(0)
    loss = model.loss(x, generator=gen)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


def test_bits_per_dim_normalises_by_dimension():
    assert bits_per_dim(torch.tensor(-math.log(2) * 12), 4).item() == pytest.approx(3.0)


@pytest.mark.parametrize("call,message", [
    (lambda m: m.log_prob(torch.zeros(2, 5, dtype=torch.long)), "expects 4"),
    (lambda m: m.log_prob(torch.zeros(2, 2, D, dtype=torch.long)), r"\[batch, D\]"),
    (lambda m: m.log_prob(torch.full((2, D), 3)), r"0\.\.2"),
    (lambda m: m.log_prob(torch.zeros(2, D)), "integer"),
    (lambda m: m.log_prob(torch.zeros(2, D, dtype=torch.long), torch.ones(2, D)), "torch.bool"),
    (lambda m: m.log_prob(torch.zeros(2, D, dtype=torch.long), torch.ones(3, D, dtype=torch.bool)), "shape"),
    (lambda m: m.log_prob(torch.zeros(2, D, dtype=torch.long), torch.zeros(2, D, dtype=torch.bool)), "empty"),
    (lambda m: m.log_prob(torch.zeros(2, D, dtype=torch.long), estimator="two-step"), "estimator"),
    (lambda m: m.conditional_log_prob(torch.zeros(1, D, dtype=torch.long), torch.ones(1, D, dtype=torch.bool),
                                      torch.ones(1, D, dtype=torch.bool)), "overlap"),
    (lambda m: m.sample(torch.zeros(1, D, dtype=torch.long), torch.zeros(1, D, dtype=torch.bool), -1.0),
     "temperature"),
    (lambda m: m.sample(torch.zeros(1, D, dtype=torch.long), torch.zeros(1, D, dtype=torch.bool), "0.5"),
     "temperature"),
    (lambda m: m.log_prob(torch.zeros(2, D, dtype=torch.long), estimator="one-step", num_draws=2.5), "num_draws"),
    (lambda m: m.log_prob(torch.zeros(2, D, dtype=torch.long), estimator="one-step", num_draws=True), "num_draws"),
    (lambda m: m.sample(torch.zeros(1, D, dtype=torch.long), torch.zeros(1, D, dtype=torch.bool), generator=5),
     "torch.Generator"),
    (lambda m: m.loss(torch.zeros(2, D, dtype=torch.long), generator=0), "torch.Generator"),
    (lambda m: m.draw_training(2, generator="seed"), "torch.Generator"),
    (lambda m: m.log_prob(torch.zeros(2, D, dtype=torch.long, device="meta")), "is on meta"),
])
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call(tiny_model())


def test_bad_configuration_is_a_clear_error():
    with pytest.raises(ValueError, match="protocol"):
        tiny_model("zigzag")
    with pytest.raises(ValueError, match="targets='all'"):
        tiny_model(strategy="mac-inpaint", targets="protocol")


def test_lattice_nodes_feed_loss_on_any_batch_size():
    model = tiny_model(strategy="mixture", reweight=False)
    x = torch.randint(K, (7, D))
    node = lattice.training_nodes(7, D, "aoarm")
    assert torch.isfinite(model.loss(x, node))


@pytest.mark.parametrize("options", [dict(protocol="strided(0)"), dict(strategy="mixture(mixture)"),
                                     dict(query="full(0.3)"), dict(protocol="natural(3)"), dict(query="inpaint")])
def test_bad_objectives_fail_at_construction(options):
    with pytest.raises(ValueError):
        tiny_model(**options)


def test_empty_batches_and_overlapping_ratio_queries():
    model = tiny_model()
    empty = torch.zeros(0, D, dtype=torch.long)
    loss = model.loss(empty)
    assert loss.item() == 0.0
    x = all_configs(D, K)[:5]
    target = torch.zeros(5, D, dtype=torch.bool)
    target[:, :2] = True
    given = torch.zeros_like(target)
    given[:, 1:3] = True
    for method in ("chain", "ratio"):
        with pytest.raises(ValueError, match="overlap"):
            model.conditional_log_prob(x, target, given, method=method)


def test_conditional_mean_is_the_heads_mean_in_one_pass():
    from anyorder.nets.resmlp import ResMLP
    model = AnyOrderModel(ResMLP(D, None, 6, width=16, depth=1), MixtureOfGaussiansHead(2))
    x = torch.randn(7, D)
    observed = torch.rand(7, D) < 0.5
    with torch.no_grad():
        expect = model.head.mean(model.network(torch.where(observed, x, 0.0), observed))
    filled = model.conditional_mean(x, observed)
    assert torch.equal(filled[observed], x[observed]) and torch.allclose(filled[~observed], expect[~observed])
    with pytest.raises(ValueError, match="no query options"):
        with model.query_options(num_importance=4):
            pass


@pytest.mark.parametrize("kind", ["node", "path", "resmlp"])
def test_sampling_a_fully_observed_batch_returns_it(kind):
    """Nothing to draw is a walk of no steps (a policy of zero targets must not be divided by,
    and an empty step runs no network on zero rows)."""
    from anyorder.nets.path_transformer import PathTransformer
    from anyorder.nets.resmlp import ResMLP
    from anyorder.nets.transformer import Transformer
    net = {"node": lambda: Transformer(5, 3, out_features=3, width=16, depth=1, heads=2),
           "path": lambda: PathTransformer(5, 3, out_features=3, width=16, depth=1, heads=2),
           "resmlp": lambda: ResMLP(5, 3, out_features=3, width=16, depth=1)}[kind]()
    model = AnyOrderModel(net, CategoricalHead(3))
    x = torch.randint(3, (4, 5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.sample(x.clone(), torch.ones(4, 5, dtype=torch.bool)), x)


def test_build_model_refuses_a_dataset_s_own_meta():
    from anyorder.build import build_model
    from anyorder.config import load_config
    with pytest.raises(ValueError, match="meta lacks kind, num_classes: pass describe"):
        build_model(load_config("text-cpu"), {"dim": 8, "vocab": "abc"})
