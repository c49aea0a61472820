"""Step budgets against brute force: normalisation by enumeration, the K-step sampler's law,
the dynamic program over every policy, and measured step costs against the walk itself."""

import itertools
import json
import math

import pytest
import torch

from anyorder import budget
from anyorder.cli import main
from anyorder.heads import CategoricalHead, MixtureOfGaussiansHead
from anyorder.impute import impute
from anyorder.model import AnyOrderModel
from anyorder.nets.resmlp import ResMLP
from tiny import TinyNet, all_configs

D, K = 4, 3


def tiny_model(protocol="natural"):
    return AnyOrderModel(TinyNet(D, K), CategoricalHead(K), protocol=protocol)


def every_policy(length, steps):
    """All 0 = b_0 < … < b_K = m, by brute force."""
    return [torch.tensor([0, *inner, length]) for inner in itertools.combinations(range(1, length), steps - 1)]


# ---------------------------------------------------------------- policies
def test_row_boundaries_rescale_to_every_length():
    policy = torch.tensor([0, 1, 2, 7, 9, 16])
    lengths = torch.arange(1, 40)
    bounds = budget.row_boundaries(policy, lengths)
    steps = len(policy) - 1
    assert (bounds[:, 0] == 0).all() and (bounds[:, -1] == lengths).all()
    assert (bounds.diff(dim=-1) >= 0).all()
    nonempty = (bounds.diff(dim=-1) > 0).sum(-1)
    assert (nonempty == lengths.clamp(max=steps)).all()     # K passes, or one per variable
    assert torch.equal(bounds[15], policy)                  # its own length: unchanged
    assert torch.equal(bounds[31], 2 * policy)              # twice the length: twice the boundaries


def test_even_policy_and_checks():
    assert budget.even_policy(10, 3).tolist() == [0, 3, 7, 10]
    assert budget.even_policy(5, 5).tolist() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="steps must lie in 1..5"):
        budget.even_policy(5, 6)
    for bad in ([0], [1, 2], [0, 2, 2], [0.0, 1.5], [[0, 1]], "x"):
        with pytest.raises(ValueError, match="policy"):
            budget.check_policy(bad)


@pytest.mark.parametrize("kind", budget.COSTS)
def test_dynamic_program_equals_brute_force(kind):
    m = 7
    gen = torch.Generator().manual_seed(0)
    losses = torch.rand(m, m, generator=gen, dtype=torch.float64).triu()
    costs = budget.step_costs(losses, kind)
    fitted = budget.optimal_policies(costs, range(1, m + 1))
    for steps, (policy, cost) in fitted.items():
        brute = [(budget.policy_cost(costs, p), p) for p in every_policy(m, steps)]
        best_cost, best = min(brute, key=lambda pair: pair[0])
        assert cost == pytest.approx(best_cost, rel=1e-12)
        assert torch.equal(policy, best)
    assert fitted[m][0].tolist() == list(range(m + 1))


def test_step_costs_closed_forms():
    losses = torch.tensor([[1.0, 2.0, 3.0], [0.0, 4.0, 5.0], [0.0, 0.0, 6.0]], dtype=torch.float64)
    exact, ardm = budget.step_costs(losses, "exact"), budget.step_costs(losses, "ardm")
    assert exact[0, 3] == 6 and exact[1, 3] == 9 and exact[0, 1] == 1 and exact[2, 3] == 6
    assert ardm[0, 3] == 3 and ardm[1, 3] == 8
    assert math.isinf(exact[2, 1]) and math.isinf(ardm[1, 1])
    with pytest.raises(ValueError, match="unknown cost"):
        budget.step_costs(losses, "cheap")


# ---------------------------------------------------------------- the K-step process
POLICIES = [{"steps": 1}, {"steps": 2}, {"steps": 3}, {"policy": [0, 1, 4]}, {"policy": [0, 3, 4]}]


@pytest.mark.parametrize("protocol", ["natural", "strided(2)"])
@pytest.mark.parametrize("budgeted", POLICIES)
def test_budgeted_joint_and_conditional_are_normalised(protocol, budgeted):
    model = tiny_model(protocol)
    x = all_configs(D, K)
    with torch.no_grad():
        joint = model.log_prob(x, **budgeted)
        assert joint.double().exp().sum().item() == pytest.approx(1.0, abs=1e-5)
        given = torch.tensor([False, True, False, False]).expand_as(x)
        cond = model.conditional_log_prob(x, ~given, given, **budgeted)
        mass = torch.zeros(K).index_add(0, x[:, 1], cond.double().exp().float())
        assert torch.allclose(mass, torch.ones(K), atol=1e-5)   # one distribution per x_1
        mask = torch.tensor([True, False, True, True]).expand_as(x)
        marginal = model.log_prob(x, mask, **budgeted)
        assert marginal.double().exp().sum().item() / K == pytest.approx(1.0, abs=1e-5)


def test_one_variable_per_step_is_the_exact_likelihood():
    model = tiny_model("strided(2)")
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(K, (64, D), generator=gen)
    mask = torch.rand(64, D, generator=gen) < 0.6
    mask[:, 0] = True
    with torch.no_grad():
        assert torch.allclose(model.log_prob(x, steps=D), model.log_prob(x), atol=1e-5)
        assert torch.allclose(model.log_prob(x, mask, steps=D), model.log_prob(x, mask), atol=1e-5)
        given = ~mask
        cond = model.conditional_log_prob(x, mask, given, policy=list(range(D + 1)))
        assert torch.allclose(cond, model.conditional_log_prob(x, mask, given), atol=1e-5)
        # Guard: parallel steps really change the distribution of this sharp model.
        assert (model.log_prob(x, steps=1) - model.log_prob(x)).abs().max() > 0.1


@pytest.mark.parametrize("budgeted,given", [({"steps": 2}, [False, False, False, False]),
                                            ({"policy": [0, 1, 3]}, [False, True, False, False])])
def test_budgeted_samples_follow_the_budgeted_likelihood(budgeted, given):
    model = tiny_model("strided(2)")
    gen = torch.Generator().manual_seed(0)
    x0 = torch.tensor([[2, 0, 1, 1]])
    given = torch.tensor([given])
    n = 40_000
    with torch.no_grad():
        drawn = model.sample(x0.repeat(n, 1), given.repeat(n, 1), generator=gen, **budgeted)
        configs = all_configs(D, K)
        configs = configs[(configs[:, given[0]] == x0[:, given[0]]).all(-1)]
        g = given.expand_as(configs)
        exact = model.conditional_log_prob(configs, ~g, g, **budgeted).double().exp()
        one_per_pass = model.conditional_log_prob(configs, ~g, g).double().exp()
    assert (drawn[:, given[0]] == x0[:, given[0]]).all()
    codes = (drawn * K ** torch.arange(D)).sum(-1)
    config_codes = (configs * K ** torch.arange(D)).sum(-1)
    empirical = (codes.unsqueeze(-1) == config_codes).double().mean(0)
    assert 0.5 * (empirical - exact).abs().sum() < 0.02
    assert 0.5 * (exact - one_per_pass).abs().sum() > 0.1      # the test could tell them apart


def test_one_step_imputation_draws_every_hole_from_the_observed_node():
    torch.manual_seed(0)
    head = MixtureOfGaussiansHead(3)
    model = AnyOrderModel(ResMLP(D, None, head.params_per_variable, width=16, depth=1), head)
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(20, D, generator=gen)
    holes = torch.rand(20, D, generator=gen) < 0.5
    holes[holes.all(-1), 0] = False
    filled = impute(model, torch.where(holes, float("nan"), table), reduce="sample", temperature=0.0, steps=1)[0]
    with torch.no_grad():
        mode = head.sample(model(torch.where(holes, 0.0, table), ~holes).flatten(0, 1), 0.0).view(20, D)
    assert torch.allclose(filled[holes], mode[holes]) and torch.equal(filled[~holes], table[~holes])


def test_budget_errors():
    model = tiny_model()
    x = torch.zeros(2, D, dtype=torch.long)
    with pytest.raises(ValueError, match="estimator='exact'"):
        model.log_prob(x, estimator="one-step", steps=2)
    with pytest.raises(ValueError, match="policy has 2 steps"):
        model.log_prob(x, steps=3, policy=[0, 1, 4])
    with pytest.raises(ValueError, match="steps must be an integer"):
        model.sample(x, torch.zeros_like(x, dtype=torch.bool), steps=0)
    with pytest.raises(ValueError, match="method='chain'"):
        model.conditional_log_prob(x, torch.ones_like(x, dtype=torch.bool), torch.zeros_like(x, dtype=torch.bool),
                                   method="ratio", steps=2)


# ---------------------------------------------------------------- measured costs
@pytest.mark.parametrize("protocol", ["natural", "strided(2)"])
def test_exact_step_costs_predict_the_budgeted_likelihood(protocol):
    """The mean of -log_prob(policy) over rows equals Σ_k C[b_{k-1}, b_k] measured on them."""
    model = tiny_model(protocol)
    rows = torch.randint(K, (50, D), generator=torch.Generator().manual_seed(1))
    losses = budget.step_losses(model, rows, batch_size=16)
    costs = budget.step_costs(losses, "exact")
    with torch.no_grad():
        for steps in range(1, D + 1):
            for policy in every_policy(D, steps):
                walked = -model.log_prob(rows, policy=policy).double().mean()
                assert walked.item() == pytest.approx(budget.policy_cost(costs, policy), rel=1e-5)
    assert torch.isnan(losses[1, 0]) and not torch.isnan(losses.triu()).any()


def test_conditional_step_costs_predict_the_budgeted_conditional():
    model = tiny_model("strided(2)")
    gen = torch.Generator().manual_seed(3)
    rows = torch.randint(K, (40, D), generator=gen)
    given = torch.rand(40, D, generator=gen).argsort(-1) < 1              # one observed variable per row
    costs = budget.step_costs(budget.step_losses(model, rows, given=given), "exact")
    with torch.no_grad():
        for policy in every_policy(D - 1, 2):
            walked = -model.conditional_log_prob(rows, ~given, given, policy=policy).double().mean()
            assert walked.item() == pytest.approx(budget.policy_cost(costs, policy), rel=1e-5)
    with pytest.raises(ValueError, match="same number"):
        budget.step_losses(model, rows, given=torch.rand(40, D, generator=gen) < 0.5)


def test_fit_policies_store_and_reuse(tmp_path):
    model = tiny_model("strided(2)")
    rows = torch.randint(K, (20, D), generator=torch.Generator().manual_seed(2))
    fitted, losses, path = budget.fit_policies(model, rows, [2, 3], tmp_path)
    stored = json.loads(path.read_text())["policies"]
    assert sorted(stored) == ["2", "3"] and stored["2"]["protocol"] == "strided(2)"
    assert torch.equal(budget.load_policy(tmp_path, 2, model), fitted[2][0])
    assert budget.load_policy(tmp_path, 1, model) is None
    for other in (tiny_model("natural"), AnyOrderModel(TinyNet(D, K, seed=1), CategoricalHead(K), protocol="strided(2)")):
        with pytest.raises(ValueError, match="fitted for other weights"):
            budget.load_policy(tmp_path, 2, other)
    stored = torch.load(tmp_path / budget.STEP_LOSSES)
    torch.save({**stored, "losses": 2 * losses}, tmp_path / budget.STEP_LOSSES)
    _, reused, _ = budget.fit_policies(model, rows, [1], tmp_path)    # losses come from the file
    assert torch.allclose(reused, 2 * losses, equal_nan=True)
    assert sorted(budget.read_policies(tmp_path)) == ["1", "2", "3"]
    _, measured, _ = budget.fit_policies(model, rows, [1], tmp_path, remeasure=True)
    assert torch.allclose(measured, losses, equal_nan=True)
    retrained = AnyOrderModel(TinyNet(D, K, seed=1), CategoricalHead(K), protocol="strided(2)")
    _, fresh, _ = budget.fit_policies(retrained, rows, [1], tmp_path)    # other weights: measured again
    assert not torch.allclose(fresh, losses, equal_nan=True)
    (tmp_path / budget.POLICIES).write_text("{}")
    with pytest.raises(ValueError, match="not a policies file"):
        budget.read_policies(tmp_path)


# ---------------------------------------------------------------- command line
TINY_TEXT = ["data.seq_len=16", "net.width=32", "net.depth=1", "net.heads=2", "train.batch_size=8",
             "train.steps=4", "train.eval_every=4", "train.eval_rows=8", "train.log_every=4"]


def test_cli_fit_policy_then_eval_and_sample_with_steps(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--quiet", *TINY_TEXT, f"train.out={run}"]) == 0
    assert main(["fit-policy", str(run), "--steps", "4", "2", "--rows", "16", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "K=    4" in out and (run / budget.POLICIES).exists()
    report = tmp_path / "eval.json"
    assert main(["eval", str(run), "--rows", "8", "--quiet", "--steps", "4", "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["steps"] == 4 and result["policy"] == json.loads((run / budget.POLICIES).read_text())["policies"]["4"]["boundaries"]
    assert main(["eval", str(run), "--rows", "8", "--quiet", "--steps", "3", "--json", str(report)]) == 0
    assert "evenly spaced" in capsys.readouterr().err
    assert json.loads(report.read_text())["policy"] == budget.even_policy(16, 3).tolist()
    assert main(["sample", str(run), "--text", "th_ qu_ck", "--num", "2", "--steps", "2", "--quiet"]) == 0
    assert main(["sample", str(run), "--num", "1", "--steps", "17"]) == 2
    assert "--steps must lie in 1..16" in capsys.readouterr().err
