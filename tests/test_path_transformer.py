"""PathTransformer, alone and inside AnyOrderModel, against enumeration and step-by-step references."""

import math

import pytest
import torch

from anyorder import lattice
from anyorder.config import load_config
from anyorder.errors import UserError
from anyorder.heads import CategoricalHead
from anyorder.model import AnyOrderModel
from anyorder.nets.path_transformer import CACHE_BLOCK, PathTransformer
from tiny import all_configs, assert_marginals_normalised

D, K = 4, 3


def tiny_net(dim=D, seed=0, **kw):
    torch.manual_seed(seed)
    net = PathTransformer(dim, K, K, **{"width": 16, "depth": 2, "heads": 2, **kw})
    with torch.no_grad():
        net.head.weight.normal_(std=1.0)  # the init is zero (uniform); make conditionals sharp
    return net.eval()


def tiny_model(protocol="natural", dim=D, **kw):
    return AnyOrderModel(tiny_net(dim, **kw), CategoricalHead(K), protocol=protocol)


def prefix(path, t):
    """The path walked up to and including target t: later targets are off the path."""
    return torch.where(path > t, path.shape[1], path)


def random_paths(batch, dim, protocol, seed):
    gen = torch.Generator().manual_seed(seed)
    given = torch.rand(batch, dim, generator=gen) < 0.4
    target = ~given & (torch.rand(batch, dim, generator=gen) < 0.8)
    return lattice.paths(given, target, protocol, gen)


@pytest.mark.parametrize("protocol", ["natural", "strided(2)"])
def test_marginals_sum_to_one_for_every_subset(protocol):
    assert_marginals_normalised(tiny_model(protocol), D, K)


def test_likelihoods_depend_on_the_path():
    """Guard: normalisation holds for any path; an inconsistent network's values must differ by path."""
    x = all_configs(D, K)
    with torch.no_grad():
        a, b = tiny_model("natural").log_prob(x), tiny_model("strided(2)").log_prob(x)
    assert (a - b).abs().max() > 0.1


@pytest.mark.parametrize("protocol", ["natural", "strided(2)", "random"])
@pytest.mark.parametrize("attention_bias", ["alibi", "none"])
def test_one_pass_equals_step_by_step(protocol, attention_bias):
    dim = 6
    net = tiny_net(dim, attention_bias=attention_bias)
    path = random_paths(32, dim, protocol, seed=1)
    x = torch.randint(0, K, (32, dim), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = net(x, path)
        noise = torch.randint(0, K, x.shape, generator=torch.Generator().manual_seed(3))
        assert torch.equal(full, net(torch.where(path < dim, x, noise), path))  # off the path: absent
        for t in range(dim):
            at = path == t
            if at.any():
                assert torch.allclose(net(x, prefix(path, t))[at], full[at], atol=1e-5)
        assert not full[(path < 0) | (path == dim)].any()


@pytest.mark.parametrize("protocol", ["natural", "strided(2)"])
def test_exact_likelihood_is_the_sum_of_step_by_step_edges(protocol):
    dim = 5
    model = tiny_model(protocol, dim)
    given = torch.rand(16, dim, generator=torch.Generator().manual_seed(4)) < 0.3
    target = ~given
    x = torch.randint(0, K, (16, dim), generator=torch.Generator().manual_seed(5))
    path = lattice.paths(given, target, protocol)
    with torch.no_grad():
        steps = torch.zeros(16)
        for t in range(dim):
            at = path == t
            edge = model.head.log_prob(model.network(x, prefix(path, t)), x)
            steps += (edge * at).sum(-1)
        assert torch.allclose(model.conditional_log_prob(x, target, given), steps, atol=1e-5)
        loss = model.loss(x, path)
    assert loss.item() == pytest.approx(-steps.mean().item() / dim, abs=1e-5)


@pytest.mark.parametrize("policy", [None, [0, 2, 3, 7], [0, 7], [0, 1, 4, 5, 7]])
def test_key_value_cache_equals_the_one_pass_forward(policy):
    """The cache walk (begin, then per step predict and extend, padded blocks for rows of
    unequal paths) gives the parameters the one-pass forward gives with those steps."""
    dim = 7
    model = tiny_model("strided(3)", dim)
    gen = torch.Generator().manual_seed(6)
    given = torch.rand(9, dim, generator=gen) < 0.4
    given[0] = False                                   # a row without evidence
    given[1] = True
    given[1, 3] = False                                # a row with one target
    x = torch.randint(0, K, (9, dim), generator=gen)
    rank, bounds = model._plan(given, ~given, None if policy is None else torch.tensor(policy))
    path = lattice.paths(given, ~given, "strided(3)")
    step = lattice.path_steps(path, bounds - given.sum(-1, keepdim=True))
    seen = torch.zeros(9, dim, dtype=torch.bool)
    with torch.no_grad():
        full = model.network(x, path, step)
        for rows, var, params in model.conditionals(x.clone(), ~given, given, policy):
            assert torch.allclose(params, full[rows, var], atol=1e-5)
            seen[rows, var] = True
    assert torch.equal(seen, ~given)                   # every target visited once


def test_cache_walk_across_cache_blocks_equals_the_one_pass_forward():
    """A walk longer than a cache block (the cache grows, each step attends over its whole
    buffer with the empty slots masked) gives the one-pass forward's parameters.

    Tolerance: the two compute the same fp32 sums in other orders (masked slots add exact
    zeros), so they differ by a few roundings of the largest terms; the logits here stay
    below ~12, where one fp32 rounding is 9.5e-7, and 1e-5 allows about ten of them, while a
    wrong mask or a stale slot moves a logit by amounts of order one."""
    dim = CACHE_BLOCK + 9
    model = tiny_model("natural", dim)
    gen = torch.Generator().manual_seed(3)
    given = torch.rand(5, dim, generator=gen) < 0.3
    given[0] = False                                   # a row without evidence: dim steps
    x = torch.randint(0, K, (5, dim), generator=gen)
    path = lattice.paths(given, ~given, "natural")
    steps = 0
    with torch.no_grad():
        full = model.network(x, path)
        for rows, var, params in model.conditionals(x.clone(), ~given, given):
            assert torch.allclose(params, full[rows, var], atol=1e-5)
            steps += 1
    assert steps == dim


def uncached_sample(model, x, observed, temperature, generator):
    """A step-by-step reference sampler: one full pass along the path walked so far per step."""
    path = lattice.paths(observed, ~observed, model.protocol, generator)
    x = torch.where(observed, x, 0)
    for t in range(int((~observed).sum(-1).max())):
        rows = (path == t).any(-1).nonzero().squeeze(-1)
        var = (path[rows] == t).long().argmax(-1)
        params = model.network(x, prefix(path, t))[rows, var]
        x[rows, var] = model.head.sample(params, temperature, generator)
    return x


@pytest.mark.parametrize("protocol", ["natural", "strided(2)", "random"])
def test_cached_sampling_draws_what_uncached_sampling_draws(protocol):
    dim = 6
    model = tiny_model(protocol, dim)
    gen = torch.Generator().manual_seed(8)
    observed = torch.rand(200, dim, generator=gen) < 0.3
    x = torch.randint(0, K, (200, dim), generator=gen)
    with torch.no_grad():
        cached = model.sample(x, observed, 0.8, torch.Generator().manual_seed(9))
        plain = uncached_sample(model, x, observed, 0.8, torch.Generator().manual_seed(9))
    assert torch.equal(cached, plain)
    assert torch.equal(cached[observed], x[observed])
    assert len(cached.unique(dim=0)) > 50  # the draws really vary


def test_sample_reproduces_the_chain_conditional():
    model = tiny_model("strided(2)")
    gen = torch.Generator().manual_seed(0)
    x0 = torch.tensor([[2, 0, 1, 1]])
    given = torch.tensor([[False, True, False, False]])
    n = 30_000
    with torch.no_grad():
        drawn = model.sample(x0.repeat(n, 1), given.repeat(n, 1), generator=gen)
        configs = all_configs(D, K)
        configs = configs[configs[:, 1] == 0]
        logp = model.conditional_log_prob(configs, ~given.expand_as(configs), given.expand_as(configs))
    truth = logp.double().exp()
    assert truth.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert truth.max() < 0.9  # not a point mass
    codes = (drawn * K ** torch.arange(D)).sum(-1)
    freq = torch.stack([(codes == c).double().mean() for c in (configs * K ** torch.arange(D)).sum(-1)])
    assert 0.5 * (freq - truth).abs().sum().item() < 0.02


def test_one_step_estimator_is_unbiased(monkeypatch):
    """Single draws average to the exact value, and so does one call with many draws, taken
    in chunks (a chunk of 7 draws x 3 rows here, so that the last chunk is partial)."""
    import anyorder.model
    monkeypatch.setattr(anyorder.model, "DRAW_CHUNK", 21)
    model = tiny_model("strided(2)")
    gen = torch.Generator().manual_seed(0)
    x = all_configs(D, K)[torch.tensor([5, 40, 77])]
    mask = torch.tensor([[True, True, True, True], [True, False, True, True], [False, True, False, True]])
    reps = 4000
    with torch.no_grad():
        exact = model.log_prob(x, mask)
        draws = model.log_prob(x.repeat(reps, 1), mask.repeat(reps, 1), "one-step", generator=gen).view(reps, 3)
        averaged = model.log_prob(x, mask, "one-step", num_draws=reps, generator=gen)
    err = draws.std(0) / math.sqrt(reps)
    assert ((draws.mean(0) - exact).abs() < 4 * err).all()
    assert ((averaged - exact).abs() < 4 * err).all()
    assert (draws.std(0) > 0.05).all()


TINY = ["data.seq_len=16", "net.width=16", "net.depth=1", "net.heads=2", "train.batch_size=8",
        "train.eval_rows=4", "train.log_every=2", "train.ckpt_every=2", "optim.decay=none"]


def test_path_preset_trains_resumes_and_answers_queries(tmp_path):
    """A resumed run repeats the uninterrupted one exactly (same paths drawn), and the
    checkpoint answers queries as the model did."""
    from safetensors.torch import load_file

    from anyorder.build import load_model
    from anyorder.train import resume_config, train
    full = train(load_config("text-cpu-path", TINY + ["train.steps=4", f"train.out={tmp_path / 'full'}"]),
                 progress=False)
    part = train(load_config("text-cpu-path", TINY + ["train.steps=2", f"train.out={tmp_path / 'part'}"]),
                 progress=False)
    part = train(resume_config(part, ["train.steps=4"]), resume=True, progress=False)
    a, b = load_file(full / "model.safetensors"), load_file(part / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    model, _, meta = load_model(full)
    assert meta["dim"] == 16 and isinstance(model.network, PathTransformer)
    x = torch.randint(0, 27, (2, 16))
    observed = torch.arange(16).expand(2, 16) % 2 == 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        filled = model.sample(x, observed, generator=torch.Generator().manual_seed(0))
        assert torch.equal(filled[observed], x[observed])
        assert torch.isfinite(model.log_prob(filled)).all()


def test_an_empty_batch_answers_every_query_with_no_rows():
    model = tiny_model().eval()
    x = torch.zeros(0, D, dtype=torch.long)
    none = torch.zeros(0, D, dtype=torch.bool)
    assert model.log_prob(x).shape == (0,) and model.log_prob(x, steps=2).shape == (0,)
    assert model.conditional_log_prob(x, ~none, none).shape == (0,)
    assert model.sample(x, none).shape == (0, D) and model.conditional_mean(x, none).shape == (0, D)
    assert model.loss(x).item() == 0.0


def test_bad_input_is_a_clear_error():
    model = tiny_model()
    x = torch.zeros(2, D, dtype=torch.long)
    with pytest.raises(ValueError, match="int64 path"):
        model.network(x, torch.ones(2, D, dtype=torch.bool))
    with pytest.raises(ValueError, match="paths must be an int64"):
        model.loss(x, torch.ones(2, D, dtype=torch.bool))
    with pytest.raises(ValueError, match="path values"):
        model.loss(x, torch.full((2, D), 9))
    with pytest.raises(ValueError, match="NodeNetwork or PathNetwork"):
        AnyOrderModel(torch.nn.Linear(2, 2), CategoricalHead(K))
    with pytest.raises(ValueError, match="path mix"):
        AnyOrderModel(tiny_net(), CategoricalHead(K), path_mix=(0, 0, 0))
    for mix in ((1, 1, "nan"), (1, True, 1), (1, 1, float("inf"))):      # YAML reads nan as text
        with pytest.raises(UserError, match="path mix"):
            AnyOrderModel(tiny_net(), CategoricalHead(K), path_mix=mix)
    for options, message in (({"heads": 0}, "heads must be >= 1"), ({"width": 7}, "divisible by heads"),
                             ({"depth": 0}, "depth must be >= 1"), ({"dropout": 1.5}, "dropout"),
                             ({"attention_bias": "rope"}, "attention_bias")):
        with pytest.raises(UserError, match=message):
            tiny_net(**options)


@pytest.mark.parametrize("protocol", ["natural", "strided(2)", "random"])
def test_a_packed_second_path_is_two_separate_passes(protocol):
    """A row packing two target sequences after one given set answers each as its own pass."""
    dim = 7
    net = tiny_net(dim)
    gen = torch.Generator().manual_seed(11)
    given = torch.rand(24, dim, generator=gen) < 0.3
    given[:8] = False                                       # rows without evidence, as training's pairs
    first = ~given & (torch.rand(24, dim, generator=gen) < 0.5)
    rest = ~given & ~first
    one, two = lattice.paths(given, first, protocol, gen), lattice.paths(given, rest, protocol, gen)
    packed = torch.where(rest, dim + 1 + two, one)
    x = torch.randint(0, K, (24, dim), generator=gen)
    with torch.no_grad():
        got = net(x, packed)
        assert torch.allclose(got[first], net(x, one)[first], atol=1e-5)
        assert torch.allclose(got[rest], net(x, two)[rest], atol=1e-5)
        assert not got[given].any()


def dense_reference(net, x, path, step):
    """The path network's parameters by dense attention over every slot of a row at once, the
    slots and the rules of who sees whom listed one by one (the module docstring), with the
    blocks' plain forward: the truth the split content / query attention must equal."""
    dim = x.shape[1]
    out = torch.zeros(*step.shape, net.head.out_features)
    for b in range(len(x)):
        on = [j for j in range(dim) if path[b, j] != dim]
        second = {j: bool(path[b, j] > dim) for j in on}
        place = {j: int(path[b, j] - dim - 1 if second[j] else path[b, j]) for j in on}
        content = [j for j in on if path[b, j] < 0] + sorted((j for j in on if path[b, j] >= 0),
                                                             key=lambda j: (second[j], place[j]))
        targets = [j for j in content if path[b, j] >= 0]
        queries = [(s, j) for s in range(step.shape[1]) for j in targets]
        n = len(content)
        allowed = torch.zeros(n + len(queries), n + len(queries), dtype=torch.bool)
        for i, j in enumerate(content):
            for i2, j2 in enumerate(content):
                allowed[i, i2] = path[b, j2] < 0 or (path[b, j] >= 0 and second[j] == second[j2]
                                                     and place[j2] <= place[j]) or i == i2
        for q, (s, j) in enumerate(queries):
            allowed[n + q, n + q] = True
            for i2, j2 in enumerate(content):
                allowed[n + q, i2] = path[b, j2] < 0 or (second[j] == second[j2] and step[b, s, j2] < step[b, s, j])
        position = torch.tensor(content + [j for _, j in queries])
        bias = -net.slopes[:, None, None] * (position[:, None] - position[None, :]).abs().float()
        bias = bias.masked_fill(~allowed, float("-inf"))[None]
        var = torch.tensor(content)
        h = torch.cat([net.value(x[b, var][None], var[None]) + net.position[var][None],
                       net.predicts[torch.tensor([j for _, j in queries], dtype=torch.long)][None]], 1)
        for block in net.blocks:
            h = block(h, bias)
        params = net.head(net.ln_f(h[0, n:]))
        for q, (s, j) in enumerate(queries):
            out[b, s, j] = params[q]
    return out


def test_split_attention_equals_dense_attention_over_every_slot():
    """Content→content and query→content + self scores (two streams, a packed second path,
    given sets of every size) give what one dense attention over all slots gives."""
    dim = 6
    net = tiny_net(dim, seed=3)
    gen = torch.Generator().manual_seed(4)
    path = lattice.training_paths(12, dim, "natural", mix=(1, 1, 1, 1), generator=gen)
    step = torch.stack([torch.where(path > dim, path - dim - 1, path), lattice.training_steps(path, gen)], 1)
    x = torch.randint(0, K, (12, dim), generator=gen)
    with torch.no_grad():
        fast, slow = net(x, path, step), dense_reference(net, x, path, step)
    assert (path > dim).any() and (path < 0).any()           # the draw holds packed pairs and given sets
    assert torch.allclose(fast, slow, atol=1e-5)
