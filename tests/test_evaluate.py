"""`anyorder.evaluate`: the three queries `anyorder eval` reports, against enumeration."""

import pytest
import torch

from anyorder import AnyOrderModel, CategoricalHead
from anyorder.errors import UserError
from anyorder.evaluate import evaluate, infill_given, marginal_masks, report_lines, row_log_likelihoods
from anyorder.model import bits_per_dim
from tiny import OracleNet, all_configs


def test_each_query_is_the_enumerated_probability_of_its_masks():
    """With the exact conditionals of a joint table, every figure is a sum over that table:
    joint p(x), marginal Σ p over the cells outside e, infilling p(x) / p(x_o)."""
    D, K = 4, 3
    table = torch.rand(*(K,) * D, generator=torch.Generator().manual_seed(0)).double() + 0.05
    table /= table.sum()
    model = AnyOrderModel(OracleNet(table), CategoricalHead(K), protocol="natural")
    configs = all_configs(D, K)
    x = configs[torch.randperm(len(configs), generator=torch.Generator().manual_seed(1))[:20]]
    got = row_log_likelihoods(model, x, batch_size=7, progress=False)

    def log_marginal(keep):   # log Σ of the table over the configurations agreeing with x on `keep`
        agree = ((configs.unsqueeze(0) == x.unsqueeze(1)) | ~keep.unsqueeze(1)).all(-1)
        return (agree.double() * table.flatten()).sum(-1).log()

    everything = torch.ones_like(x, dtype=torch.bool)
    given = infill_given(len(x), D)
    assert (given.sum(-1) == D // 2).all()
    expected = {"joint": log_marginal(everything), "marginal": log_marginal(marginal_masks(len(x), D)),
                "infill": log_marginal(everything) - log_marginal(given)}
    for name, value in expected.items():      # float32 network outputs: ~1e-6 relative per edge, D edges
        torch.testing.assert_close(got[name].double(), value, atol=1e-5, rtol=0)


def test_report_has_every_query_in_both_units_and_prints_the_asked_one():
    D, K = 4, 3
    table = torch.rand(*(K,) * D, generator=torch.Generator().manual_seed(2)).double() + 0.05
    model = AnyOrderModel(OracleNet(table / table.sum()), CategoricalHead(K))
    x = all_configs(D, K)[:9]
    report = evaluate(model, x, progress=False)
    per_row = row_log_likelihoods(model, x, progress=False)
    for name in ("joint", "marginal", "infill"):
        assert report[f"{name}_loglik"] == torch.mean(per_row[name].double()).item()
        assert abs(report[f"{name}_bpd"] - bits_per_dim(per_row[name], D).double().mean().item()) < 1e-12
    bpd, nats = report_lines(report, "bpd"), report_lines(report, "nats per row")
    assert len(bpd) == 4 and all(line.endswith(" bpd") for line in bpd[1:]) and "lower is better" in bpd[0]
    assert f"{report['infill_bpd']:9.4f}" in bpd[3] and "infilling, 50% observed" in bpd[3]
    assert f"{report['joint_loglik']:9.4f}" in nats[1] and "higher is better" in nats[0]


def test_bad_arguments_are_one_line_errors():
    D, K = 3, 2
    table = torch.rand(*(K,) * D, generator=torch.Generator().manual_seed(3)).double() + 0.05
    model = AnyOrderModel(OracleNet(table / table.sum()), CategoricalHead(K))
    x = all_configs(D, K)
    for options, message in (({"batch_size": 0}, "batch_size must be an integer >= 1"),
                             ({"batch_size": 2.5}, "batch_size must be an integer >= 1"),
                             ({"seed": "a"}, "seed must be an integer"),
                             ({"autocast": "bf16"}, "autocast must be None or a context")):
        with pytest.raises(UserError, match=message):
            evaluate(model, x, progress=False, **options)
    for rows in (x.numpy(), x[0], x[:0]):
        with pytest.raises(UserError, match="rows must be a tensor|no rows"):
            evaluate(model, rows, progress=False)
