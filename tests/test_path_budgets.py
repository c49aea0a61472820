"""A path network under step budgets, K = 1 conditionals, compression and tables, checked
against enumeration, single-target queries and numerical integration on tiny models."""

import math

import pytest
import torch

from anyorder import budget
from anyorder.cli import main
from anyorder.heads import CategoricalHead, TableHead
from anyorder.model import AnyOrderModel
from anyorder.nets.path_transformer import PathTransformer
from tiny import all_configs

D, K = 4, 3


def path_model(protocol="natural", dim=D, seed=0):
    torch.manual_seed(seed)
    net = PathTransformer(dim, K, K, width=16, depth=2, heads=2)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.3)       # far from the zero-initialised, uniform output
        net.head.weight.normal_(std=1.0)
    return AnyOrderModel(net, CategoricalHead(K), protocol=protocol).eval()


@pytest.mark.parametrize("protocol", ["natural", "strided(2)", "natural-strided"])
@pytest.mark.parametrize("policy", [[0, 4], [0, 1, 3, 4], [0, 2, 4], [0, 1, 2, 3, 4]])
def test_k_step_likelihood_sums_to_one(protocol, policy):
    """Σ_x p_K(x) = 1 over all K^D rows, and Σ_{x_u} p_K(x_u | x_o) = 1 given a fixed x_o
    (the policy rescaled to |u| = 3)."""
    model = path_model(protocol)
    x = all_configs(D, K)
    with torch.no_grad():
        joint = model.log_prob(x, policy=policy).double().exp().sum().item()
        given = torch.tensor([False, False, True, False]).expand_as(x)
        rows = x[x[:, 2] == 1]
        cond = model.conditional_log_prob(rows, ~given[:len(rows)], given[:len(rows)], policy=policy)
    assert joint == pytest.approx(1.0, abs=1e-5)     # float32 sums of 81 terms: ~1e-6 off
    assert cond.double().exp().sum().item() == pytest.approx(1.0, abs=1e-5)


def test_k_steps_differ_and_k_equal_length_is_the_exact_likelihood():
    """K = |u| is the exact path likelihood (one pass, and the cache walk's conditionals
    summed); fewer steps give another, still normalised, distribution."""
    model = path_model("strided(2)")
    x = all_configs(D, K)
    mask = torch.rand(len(x), D, generator=torch.Generator().manual_seed(0)) < 0.7
    mask[:, 1] = True
    with torch.no_grad():
        exact = model.log_prob(x, mask)
        walked = torch.zeros(len(x))
        for rows, var, params in model.conditionals(x, mask):
            walked.index_add_(0, rows, torch.log_softmax(params, -1).gather(-1, x[rows, var, None]).squeeze(-1))
        assert torch.allclose(model.log_prob(x, mask, steps=D), exact, atol=1e-5)
        assert torch.allclose(walked, exact, atol=1e-5)
        two = model.log_prob(x, policy=[0, 2, 4])
    assert (two - model.log_prob(x)).abs().max() > 0.1


@pytest.mark.parametrize("protocol", ["strided(2)", "natural-strided"])
def test_k_step_samples_match_the_k_step_likelihood(protocol):
    """Two-step draws against the enumerated two-step distribution. TV between the empirical
    and the true law of 81 outcomes: E[TV] <= ½·sqrt(81 / N) = 0.0225 at N = 40000 (Cauchy–
    Schwarz), and one draw moves TV by at most 1/N, so P(TV > E + 0.0175) <= exp(−2N·0.0175²)
    = e^−24 (McDiarmid): a tolerance of 0.04."""
    model = path_model(protocol)
    n, policy = 40_000, [0, 2, 4]
    configs = all_configs(D, K)
    with torch.no_grad():
        truth = model.log_prob(configs, policy=policy).double().exp()
        exact = model.log_prob(configs).double().exp()
        drawn = model.sample(torch.zeros(n, D, dtype=torch.long), torch.zeros(n, D, dtype=torch.bool),
                             generator=torch.Generator().manual_seed(3), policy=policy)
    codes = (drawn * K ** torch.arange(D)).sum(-1)
    freq = torch.bincount(codes, minlength=K ** D).double() / n
    index = (configs * K ** torch.arange(D)).sum(-1)
    assert 0.5 * (freq[index] - truth).abs().sum().item() < 0.04
    assert 0.5 * (exact - truth).abs().sum().item() > 0.1        # the test tells the two laws apart


@pytest.mark.parametrize("policy", [[0, 2, 4], [0, 1, 3, 4], [0, 4], [0, 1, 2, 3, 4]])
def test_natural_strided_walks_natural_paths_and_strided_k_budgets(policy):
    """Under natural-strided one network answers each query in the order its budget walks:
    a step of several targets walks strided(K) (the same weights under protocol strided(K)
    give the same K-step likelihood, joint and conditional, also where a row's steps hold
    one target each and so walk natural), one target per step the natural path."""
    mixed = path_model("natural-strided")
    steps = len(policy) - 1
    strided = AnyOrderModel(mixed.network, mixed.head, protocol=f"strided({steps})").eval()
    natural = AnyOrderModel(mixed.network, mixed.head, protocol="natural").eval()
    x = all_configs(D, K)
    given = torch.zeros_like(x, dtype=torch.bool)
    given[::2, 1] = True                        # half the rows: |u| = 3
    given[1::4, 0] = True                       # a quarter: |u| = 2 (<= K for K >= 2: one target per step)
    with torch.no_grad():
        got = mixed.log_prob(x, policy=policy)
        cond = mixed.conditional_log_prob(x, ~given, given, policy=policy)
        several = torch.tensor([bool((budget.row_boundaries(torch.tensor(policy), torch.tensor([m])).diff() > 1).any())
                                for m in (~given).sum(-1).tolist()])
        want = torch.where(several, strided.conditional_log_prob(x, ~given, given, policy=policy),
                           natural.conditional_log_prob(x, ~given, given, policy=policy))
        assert torch.allclose(got, (strided if steps < D else natural).log_prob(x, policy=policy), atol=1e-5)
        assert torch.allclose(cond, want, atol=1e-5)
        assert torch.allclose(mixed.log_prob(x), natural.log_prob(x), atol=1e-5)     # the exact path: natural


def test_natural_strided_fitted_policies_cost_what_their_walks_cost(tmp_path):
    """fit-policy measures each budget's step losses in the order that budget walks
    (strided(K)), so a fitted policy's expected nats equal the mean −log p_K of its walk."""
    model = path_model("natural-strided", dim=6)
    x = torch.randint(0, K, (8, 6), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        fitted, losses, _ = budget.fit_policies(model, x, [2, 3, 6], tmp_path)
        for steps, (policy, nats) in fitted.items():
            assert nats == pytest.approx(-model.log_prob(x, policy=policy).double().mean().item(), abs=1e-4)
        assert losses.diagonal().sum().item() == pytest.approx(-model.log_prob(x).double().mean().item(), abs=1e-4)


def test_natural_strided_fit_policy_keeps_and_reuses_the_exact_orders_losses(tmp_path, monkeypatch):
    """The stored step losses are those of the protocol's own (natural) order, whatever other
    orders the budgets walk, so a second fit measures only the strided walks again."""
    model = path_model("natural-strided", dim=6)
    x = torch.randint(0, K, (8, 6), generator=torch.Generator().manual_seed(7))
    _, losses, _ = budget.fit_policies(model, x, [2, 6], tmp_path)

    def same(a, b):          # equal, NaN below the diagonal included
        return torch.allclose(a, b, rtol=0, atol=0, equal_nan=True)

    assert same(torch.load(tmp_path / budget.STEP_LOSSES)["losses"], losses)
    measured, measure = [], budget.step_losses
    monkeypatch.setattr(budget, "step_losses", lambda *a, steps=None, **k: measured.append(steps) or measure(
        *a, steps=steps, **k))
    _, again, _ = budget.fit_policies(model, x, [2, 6], tmp_path)
    assert measured == [2] and same(again, losses)


def test_conditional_mean_is_the_mode_of_each_single_target_conditional():
    """One pass (K = 1) answers every unobserved j; each answer is the mode of p(x_j | x_o)
    enumerated by single-target queries (paths that hold j alone)."""
    model = path_model()
    gen = torch.Generator().manual_seed(4)
    x = torch.randint(0, K, (12, D), generator=gen)
    observed = torch.rand(12, D, generator=gen) < 0.4
    with torch.no_grad():
        filled = model.conditional_mean(x, observed)
        for j in range(D):
            rows = (~observed[:, j]).nonzero().squeeze(-1)
            target = torch.zeros(len(rows), D, dtype=torch.bool)
            target[:, j] = True
            logp = torch.stack([model.conditional_log_prob(x[rows].index_fill(1, torch.tensor([j]), v), target,
                                                           observed[rows]) for v in range(K)], -1)
            assert torch.equal(filled[rows, j], logp.argmax(-1))
    assert torch.equal(filled[observed], x[observed])


def test_path_step_losses_price_every_two_step_policy():
    """fit-policy's cost matrix from the cache (m²/2 query slots, `seen`) against the K-step
    likelihood: the policy [0, t, m] costs Σ_{j<t} L[0, j] (step one, from o alone) plus
    Σ_{j>=t} L[t, j] (step two, from o ∪ u_<t), averaged over rows."""
    model = path_model("strided(2)")
    gen = torch.Generator().manual_seed(5)
    x = torch.randint(0, K, (6, D), generator=gen)
    given = torch.zeros(6, D, dtype=torch.bool)
    given[:, 1] = True
    with torch.no_grad():
        losses = budget.step_losses(model, x, given=given).nan_to_num(0.0)
        for t in range(3):
            policy = [0, 3] if t == 0 else [0, t, 3]
            truth = -model.conditional_log_prob(x, ~given, given, policy=policy).double().mean()
            assert (losses[0, :t].sum() + losses[t, t:].sum()).item() == pytest.approx(truth.item(), abs=1e-5)


def test_path_network_compression_round_trips_at_the_exact_code_length(tmp_path):
    """Encoder and decoder walk the cache in the same batches; the payload costs the exact
    (K = D) or the K-step likelihood in bits, plus at most 64 bits of flushing."""
    pytest.importorskip("constriction")
    from test_compress import TEXT_META, TINY_TEXT, _model, _round_trip, _shakespeare_test_text
    bundle = _model(TEXT_META, TINY_TEXT + ["net.kind=path-transformer"])
    model = bundle[0]
    text = _shakespeare_test_text(16 * 9 + 5)
    ids = torch.tensor([TEXT_META["vocab"].index(c) for c in text.decode()])
    rows = torch.cat([ids, torch.zeros(16 - 5, dtype=torch.long)]).view(10, 16)
    seen = torch.arange(16) < torch.tensor([16] * 9 + [5]).unsqueeze(-1)
    for steps, policy in ((None, None), (4, budget.even_policy(16, 4))):
        back, sizes, _ = _round_trip(tmp_path, bundle, text, batch_size=4, steps=steps)
        assert back == text
        with torch.no_grad():
            ideal = -model.log_prob(rows, seen, policy=policy).sum().item() / math.log(2)
        payload_bits = 8 * (sizes["bytes_out"] - sizes["header_bytes"])
        assert ideal - 1 <= payload_bits <= ideal + 64


def test_a_path_network_on_a_mixed_table_trains_evaluates_and_imputes(tmp_path, capsys):
    """Numeric and categorical columns, each its own head; every command runs, and the
    one-pass conditional mean of a numeric column is its density's mean by integration."""
    rows = ["x\ty\tcolour"] + [f"{i % 7 * 0.5:.2f}\t{(i * 37) % 11 - 5}\t{['red', 'blue', 'green'][i % 3]}"
                               for i in range(60)]
    (tmp_path / "t.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "holes.tsv").write_text("x\ty\tcolour\n1.0\t\tred\n\t2\t\n")
    run = tmp_path / "run"
    assert main(["train", "--config", "magic-cpu", "--quiet", f"data.source={tmp_path / 't.tsv'}",
                 "net.kind=path-transformer", "net.width=16", "net.depth=1", "net.heads=2", "train.steps=3",
                 "train.batch_size=8", "train.eval_rows=8", "train.eval_every=3", "train.ckpt_every=3",
                 f"train.out={run}", "model.components=2"]) == 0
    assert main(["eval", str(run), "--rows", "8", "--steps", "2"]) == 0
    for reduce in ("conditional-mean", "mean"):
        assert main(["impute", str(run), "--input", str(tmp_path / "holes.tsv"), "--output",
                     str(tmp_path / f"{reduce}.tsv"), "--reduce", reduce, "--num-samples", "3", "--quiet"]) == 0
        filled = (tmp_path / f"{reduce}.tsv").read_text().splitlines()
        assert len(filled) == 3 and all("nan" not in line and "\t\t" not in line for line in filled)
    capsys.readouterr()
    head = TableHead([None, 3], components=2)
    torch.manual_seed(1)
    net = PathTransformer(2, None, head.params_per_variable, width=16, depth=1, heads=2, levels=[None, 3])
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)    # raw log-scales ~ ±1: sigmas of about 0.1 to 10
    model = AnyOrderModel(net, head).eval()
    x = torch.tensor([[0.0, 2.0], [0.3, 0.0]])
    observed = torch.tensor([[False, True], [True, False]])
    grid = torch.linspace(-200, 200, 400_001)
    with torch.no_grad():
        mean = model.conditional_mean(x, observed)
        (_, var, params), = model.conditionals(x[:1], ~observed[:1], observed[:1])   # one target, one step
        density = head.log_prob(params.expand(len(grid), -1)[:, None], grid[:, None], var.expand(len(grid), 1))
        density = density[:, 0].double().exp()
        levels = torch.stack([model.conditional_log_prob(x[1:].index_fill(1, torch.tensor([1]), float(v)),
                                                         ~observed[1:], observed[1:]) for v in range(3)], -1)
    # Trapezoid rule with h = 1e-3 over ±200 (beyond 15 of the widest sigmas: tails below 1e-40):
    # error <= h²/12 · ∫|f''| ~ 1e-7 / sigma_min² ~ 1e-5 for sigma >= 0.1, under the 1e-4 asked.
    integral = torch.trapezoid(density, grid.double()).item()
    assert integral == pytest.approx(1.0, abs=1e-4)
    assert mean[0, 0].item() == pytest.approx(torch.trapezoid(density * grid, grid.double()).item(), abs=1e-4)
    assert mean[1, 1].item() == levels.argmax(-1).item()
