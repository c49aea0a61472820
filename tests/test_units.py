"""Training logs its validation figure in the units `eval` reports for that kind of data:
bits per dimension for text and images, log-likelihood in nats per row for tables."""

import csv
import math

import torch

from anyorder.build import load_model
from anyorder.config import load_config
from anyorder.data import Dataset
from anyorder.train import resume_config, train

TABLE = "valid_loglik_nats_per_row"


def _table(seed=0):
    rows = torch.randn(96, 3, generator=torch.Generator().manual_seed(seed))
    return Dataset(kind="table", dim=3, num_classes=None, train=rows, splits={"valid": rows[:16]},
                   meta={"columns": ["a", "b", "c"], "mean": [0.0] * 3, "std": [1.0] * 3})


def _config(out, *more):
    return load_config("magic-cpu", ["net.width=16", "net.depth=1", "train.batch_size=8", "train.log_every=2",
                                     "train.eval_every=2", "train.eval_rows=16", "optim.ema=0.0",
                                     "train.precision=fp32", f"train.out={out}", *more])


def _rows(run):
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_table_runs_log_nats_per_row_as_eval_does(tmp_path):
    data = _table()
    run = train(_config(tmp_path / "run", "train.steps=4"), progress=False, data=data)
    rows = _rows(run)
    assert TABLE in rows[0] and "valid_bpd" not in rows[0]
    model, config, _ = load_model(run)              # no EMA: the weights the last figure came from
    gen = torch.Generator().manual_seed(config.train.seed)
    model.eval()
    with torch.no_grad(), model.query_options(**model.validation_options()):
        logp = model.log_prob(data.split("valid"), estimator="one-step", num_draws=4, generator=gen)
    # The same draws in the same order: equal up to float32 summation order (mean of 16 rows).
    assert math.isclose(float(rows[-1][TABLE]), logp.double().mean().item(), rel_tol=1e-5, abs_tol=1e-5)


def test_a_resumed_table_run_converts_its_old_bpd_column(tmp_path):
    data = _table()
    run = train(_config(tmp_path / "run", "train.steps=4"), progress=False, data=data)
    rows = _rows(run)
    old = [{**{k: v for k, v in r.items() if k != TABLE},
            "valid_bpd": -float(r[TABLE]) / (3 * math.log(2)) if r[TABLE] else ""} for r in rows]
    with open(run / "metrics.csv", "w", newline="") as f:        # what earlier versions wrote
        writer = csv.DictWriter(f, list(old[0]))
        writer.writeheader()
        writer.writerows(old)
    train(resume_config(run, ["train.steps=6"]), resume=True, progress=False, data=data)
    again = _rows(run)
    assert [r["step"] for r in again] == ["2", "4", "6"] and "valid_bpd" not in again[0]
    for before, after in zip(rows, again):
        assert math.isclose(float(after[TABLE]), float(before[TABLE]), rel_tol=1e-12)
