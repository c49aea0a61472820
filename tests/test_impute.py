import math

import numpy as np
import pytest
import torch

from anyorder.ace import ACEModel
from anyorder.data.base import DataError
from anyorder.errors import UserError
from anyorder.data.tables import load_table, read_rows, read_table, write_table
from anyorder.heads import MixtureOfGaussiansHead
from anyorder.data.table_io import impute_file, intervals_path
from anyorder.impute import impute, nrmse
from anyorder.model import AnyOrderModel
from anyorder.nets.resmlp import ResMLP


def make(kind="aoarm", dim=4, **kwargs):
    torch.manual_seed(0)
    head = MixtureOfGaussiansHead(10)
    if kind == "ace":
        net = ResMLP(dim, None, head.params_per_variable, width=32, depth=1, context=8)
        return ACEModel(net, head, energy_width=16, energy_depth=1, eval_importance=64, **kwargs)
    return AnyOrderModel(ResMLP(dim, None, head.params_per_variable, width=32, depth=1), head, **kwargs)


def table_with_holes(n=50, dim=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    table = torch.randn(n, dim, generator=gen) * 1e3 + 1 / 3  # values with many significant bits
    holes = torch.rand(n, dim, generator=gen) < 0.4
    holes[holes.all(-1), 0] = False
    return torch.where(holes, float("nan"), table), holes


@pytest.mark.parametrize("kind,reduce", [("aoarm", "mean"), ("aoarm", "sample"), ("aoarm", "conditional-mean"),
                                         ("ace", "mean"), ("ace", "conditional-mean")])
def test_observed_cells_are_untouched_and_every_hole_is_filled(kind, reduce):
    table, holes = table_with_holes()
    before = table.clone()
    filled = impute(make(kind), table, num_samples=3, reduce=reduce, generator=torch.Generator().manual_seed(0))
    assert torch.equal(table.view(torch.int32), before.view(torch.int32))  # input not modified
    draws = filled if reduce == "sample" else filled.unsqueeze(0)
    assert draws.shape == ((3,) if reduce == "sample" else (1,)) + table.shape
    for draw in draws:
        assert torch.equal(draw[~holes].view(torch.int32), table[~holes].view(torch.int32))
        assert torch.isfinite(draw).all()


def test_mean_is_the_average_of_the_sampled_fills_and_batching_does_not_matter():
    model = make()
    table, holes = table_with_holes(n=12)
    draws = impute(model, table, num_samples=4, reduce="sample", generator=torch.Generator().manual_seed(5))
    mean = impute(model, table, num_samples=4, reduce="mean", generator=torch.Generator().manual_seed(5))
    assert torch.allclose(mean, draws.mean(0))
    assert not torch.equal(draws[0][holes], draws[1][holes])
    fill = impute(model, table, reduce="conditional-mean")
    assert torch.allclose(fill, impute(model, table, reduce="conditional-mean", batch_size=5), atol=1e-5)


def test_conditional_mean_is_the_heads_mean_at_the_observed_node():
    model = make()
    table, holes = table_with_holes(n=6)
    x = torch.nan_to_num(table)
    expect = model.head.mean(model(x, ~holes))
    assert torch.allclose(impute(model, table, reduce="conditional-mean")[holes], expect[holes])


def test_ace_query_options_reach_the_model():
    model = make("ace")
    table, holes = table_with_holes(n=6)
    proposal = impute(model, table, reduce="conditional-mean", model="proposal")
    assert torch.allclose(proposal[holes], model.head.mean(model(torch.nan_to_num(table), ~holes))[holes])
    energy = impute(model, table, reduce="conditional-mean", num_importance=64,
                    generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(energy, proposal)


def test_a_trained_model_beats_the_column_mean_on_magic(shared_data):
    data = load_table(shared_data / "tabular" / "magic.tsv.gz")
    model = make(dim=data.dim, strategy="mac-inpaint", query="inpaint")
    optim = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        loss = model.loss(data.train_batch(128, gen), generator=gen)
        optim.zero_grad()
        loss.backward()
        optim.step()
    test = data.split("test")[:400]
    hidden = torch.rand(test.shape, generator=gen) < 0.3
    hidden[hidden.all(-1), 0] = False
    holes = torch.where(hidden, float("nan"), test)
    column_mean = nrmse(test, torch.where(hidden, 0.0, test), hidden)
    assert abs(float(column_mean) - 1) < 0.1
    assert nrmse(test, impute(model, holes, reduce="conditional-mean"), hidden) < 0.85
    assert nrmse(test, impute(model, holes, num_samples=8, generator=gen), hidden) < 0.9


def test_entirely_missing_rows_are_filled_from_the_unconditional_model():
    model = make()
    table, _ = table_with_holes(n=5)
    table[3] = float("nan")
    # conditional mean of a row with nothing observed: the head's mean at the empty node
    empty = torch.zeros(1, 4, dtype=torch.bool)
    expect = model.head.mean(model(torch.zeros(1, 4), empty))[0]
    assert torch.allclose(impute(model, table, reduce="conditional-mean")[3], expect)
    # sampled: the same draws as the model's unconditional sampler from the same generator
    draws = impute(model, table[3:4], num_samples=3, reduce="sample", generator=torch.Generator().manual_seed(2))
    direct = model.sample(torch.zeros(3, 4), torch.zeros(3, 4, dtype=torch.bool), generator=torch.Generator().manual_seed(2))
    assert torch.equal(draws[:, 0], direct) and torch.isfinite(draws).all()
    with pytest.raises(ValueError, match="reduce"):
        impute(model, table_with_holes(n=5)[0], reduce="median")


def test_a_floor_bounds_every_draw_and_the_fills_from_below():
    model = make()
    table, holes = table_with_holes(n=40)
    table = table / 1e3          # model units
    floor = torch.tensor([0.0, -math.inf, 0.5, -math.inf])
    gen = torch.Generator().manual_seed(0)
    draws = impute(model, table, num_samples=20, reduce="sample", generator=gen, floor=floor)
    free = impute(model, table, num_samples=20, reduce="sample", generator=torch.Generator().manual_seed(0))
    # each draw is the unbounded draw raised to the floor (the same generator draws the same walk)
    assert torch.equal(draws, torch.where(holes, torch.maximum(free, floor), table))
    assert (free[:, holes[:, 0]][..., 0] < 0).any()      # the floor binds somewhere
    cmean = impute(model, table, reduce="conditional-mean", floor=floor)
    assert (cmean[holes[:, 2], 2] >= 0.5).all()
    with pytest.raises(UserError, match="floor"):
        impute(model, table, floor=torch.zeros(3))


def test_nrmse_matches_a_hand_computation():
    truth = torch.tensor([[0.0, 10.0], [2.0, 20.0], [4.0, 30.0], [6.0, 40.0]])
    filled = truth.clone()
    hidden = torch.tensor([[True, False], [True, True], [False, False], [False, True]])
    filled[0, 0], filled[1, 0] = 1.0, 5.0        # errors 1, 3
    filled[1, 1], filled[3, 1] = 20.0, 36.0      # errors 0, -4
    std0 = math.sqrt(((torch.tensor([0.0, 2, 4, 6]) - 3) ** 2).mean().item())   # sqrt(5)
    std1 = math.sqrt(((torch.tensor([10.0, 20, 30, 40]) - 25) ** 2).mean().item())  # sqrt(125)
    expect = (math.sqrt((1 + 9) / 2) / std0 + math.sqrt((0 + 16) / 2) / std1) / 2
    assert math.isclose(float(nrmse(truth, filled, hidden)), expect, rel_tol=1e-12)
    # columns without hidden cells do not count
    only_first = hidden.clone()
    only_first[:, 1] = False
    assert math.isclose(float(nrmse(truth, filled, only_first)), math.sqrt(5) / std0, rel_tol=1e-12)


@pytest.mark.parametrize("reduce,num_samples", [("mean", 3), ("sample", 1), ("sample", 2)])
def test_impute_file_keeps_the_observed_digits(tmp_path, reduce, num_samples):
    rng = torch.Generator().manual_seed(0)
    raw = (torch.randn(30, 4, generator=rng).double() * 7 + 100).numpy()
    raw[::3, 1] = float("nan")
    raw[1::4, 3] = float("nan")
    write_table(tmp_path / "in.tsv", ["a", "b", "c", "d"], raw)
    meta = {"columns": ["a", "b", "c", "d"], "mean": [100.0] * 4, "std": [7.0] * 4}
    out = tmp_path / "out.csv"
    written = impute_file(make(), meta, tmp_path / "in.tsv", out, num_samples, reduce, seed=1)
    names, back = read_table(out)
    assert np.array_equal(back, written)
    if reduce == "sample" and num_samples == 2:
        assert names == ["draw", "a", "b", "c", "d"] and back.shape == (60, 5)
        assert np.array_equal(back[:, 0], np.repeat([0.0, 1.0], 30))
        back = back[:30, 1:]
    assert names[-4:] == ["a", "b", "c", "d"] and not np.isnan(back).any()
    holes = np.isnan(raw)
    assert np.array_equal(back[~holes], raw[~holes])
    assert np.abs(back[holes] - 100).max() < 100


def test_impute_file_checks_the_columns(tmp_path):
    write_table(tmp_path / "in.csv", ["a", "x"], np.ones((3, 2)))
    meta = {"columns": ["a", "b"], "mean": [0.0, 0.0], "std": [1.0, 1.0]}
    with pytest.raises(DataError, match="differ"):
        impute_file(make(dim=2), meta, tmp_path / "in.csv", tmp_path / "out.csv")
    (tmp_path / "in.csv").write_text("1,2,3\n")
    with pytest.raises(DataError, match="3 columns"):
        impute_file(make(dim=2), meta, tmp_path / "in.csv", tmp_path / "out.csv")


def test_written_fills_keep_the_columns_precision_and_nonnegative_columns_stay_nonnegative(tmp_path):
    rows = [("317.6", "0.125"), ("", "0.010"), ("-2.5", ""), ("", ""), ("12.0", "")] * 6
    (tmp_path / "in.csv").write_text("a,b\n" + "".join(f"{a},{b}\n" for a, b in rows))
    # b is never negative in training, and its mean sits near 0: unbounded draws cross it often
    meta = {"columns": ["a", "b"], "mean": [100.0, 0.05], "std": [50.0, 1.0], "decimals": [1, 3],
            "nonnegative": [False, True]}
    out = tmp_path / "out.csv"
    written = impute_file(make(dim=2), meta, tmp_path / "in.csv", out, num_samples=20, seed=0, quantiles=(0.05, 0.95))
    cells = read_rows(out)[1]
    holes = [(i, j) for i, row in enumerate(rows) for j, cell in enumerate(row) if not cell]
    for i, j in holes:
        assert len(cells[i][j].partition(".")[2]) == (1, 3)[j], cells[i][j]
        assert float(cells[i][j]) == written[i, j]                    # the values returned are those written
    assert all(cells[i] == list(rows[i]) for i in range(len(rows)) if all(rows[i]))   # observed text kept
    assert all(float(cells[i][1]) >= 0 for i, j in holes if j == 1) and cells[3][0] and cells[3][1]
    side = read_rows(intervals_path(out))[1]
    assert all(float(r[3]) >= 0 and len(r[3].partition(".")[2]) == 3 for r in side if r[1] == "b")
    unbounded = impute_file(make(dim=2), {**meta, "nonnegative": [False, False]}, tmp_path / "in.csv",
                            tmp_path / "free.csv", num_samples=20, seed=0, decimals="full")
    assert (unbounded[:, 1] < 0).any()                               # the bound binds in this test
    assert any(len(c[0].partition(".")[2]) > 3 for c in read_rows(tmp_path / "free.csv")[1])
    impute_file(make(dim=2), meta, tmp_path / "in.csv", tmp_path / "two.csv", decimals=2)
    assert all(len(read_rows(tmp_path / "two.csv")[1][i][j].partition(".")[2]) == 2 for i, j in holes)


def test_intervals_without_a_count_of_draws_take_enough_of_them(tmp_path):
    # The filler's own 10 draws cannot place a 5% quantile (20 needed), and asking for
    # intervals without a count was refused with defaults on both sides. Without a count,
    # intervals take INTERVAL_DRAWS (100): the same file as naming 100, at the same seed; a
    # plain fill takes the filler's own count (10), as naming 10 does.
    (tmp_path / "in.csv").write_text("a,b\n" + "1.5,\n,0.25\n2.0,0.5\n,\n" * 5)
    meta = {"columns": ["a", "b"], "mean": [1.0, 0.0], "std": [1.0, 1.0]}
    model = make(dim=2)
    for name, count in (("default", None), ("named", 100)):
        impute_file(model, meta, tmp_path / "in.csv", tmp_path / f"{name}.csv", num_samples=count, seed=3,
                    quantiles=(0.05, 0.95))
    for name in ("default", "named"):
        assert (tmp_path / f"{name}.csv").read_text() != (tmp_path / "in.csv").read_text()
    assert intervals_path(tmp_path / "default.csv").read_text() == intervals_path(tmp_path / "named.csv").read_text()
    assert (tmp_path / "default.csv").read_text() == (tmp_path / "named.csv").read_text()
    plain = [impute_file(model, meta, tmp_path / "in.csv", tmp_path / f"plain-{c}.csv", num_samples=c, seed=3,
                         decimals="full") for c in (None, 10, 11)]
    assert np.array_equal(plain[0], plain[1]) and not np.array_equal(plain[0], plain[2])
    with pytest.raises(UserError, match="too few"):
        impute_file(model, meta, tmp_path / "in.csv", tmp_path / "few.csv", num_samples=10, quantiles=(0.05, 0.95))
