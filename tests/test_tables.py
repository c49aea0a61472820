"""Mixed numeric and categorical tables: column kinds, the TableHead, the one-hot ResMLP,
and imputation with intervals, checked against enumeration, quadrature and closed forms."""

import json
import math

import numpy as np
import pytest
import torch

from anyorder.build import build_model
from anyorder.cli import main
from anyorder.config import ConfigError, load_config
from anyorder.data import load_data
from anyorder.data.base import DataError
from anyorder.data.tables import load_table, read_rows
from anyorder.errors import UserError
from anyorder.heads import MixtureOfGaussiansHead, TableHead
from anyorder.data.table_io import impute_file, intervals_path
from anyorder.impute import check_quantiles, impute, impute_intervals
from anyorder.model import AnyOrderModel
from anyorder.nets import NodeNetwork
from anyorder.nets.resmlp import ResMLP

LEVELS = [3, None, 2, None]           # colour (3 levels), a number, a binary flag, a number


def mixed_model(levels=LEVELS, components=3, seed=0, width=32):
    torch.manual_seed(seed)
    head = TableHead(levels, components)
    net = ResMLP(len(levels), None, head.params_per_variable, width=width, depth=1, levels=levels)
    with torch.no_grad():
        net.output.weight.mul_(8.0)    # far-from-uniform conditionals
    return AnyOrderModel(net, head).eval()


def mixed_rows(n=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, len(LEVELS), generator=gen)
    for j, k in enumerate(LEVELS):
        if k:
            x[:, j] = torch.randint(k, (n,), generator=gen).float()
    return x


def quadrature_grid(head, params):
    """Points for integrating over a numeric column whose conditional has the mixture `params`:
    dense around each component (± 15 scales), wide and coarse for the tails."""
    _, means, log_scales = head.gaussian.mixture(params[: head.gaussian.params_per_variable])
    parts = [torch.linspace(mu - 15 * s, mu + 15 * s, 4001) for mu, s in zip(means.tolist(), log_scales.exp().tolist())]
    return torch.cat([torch.linspace(-3000, 3000, 60001), *parts]).double().unique().float()


def write(path, text):
    path.write_text(text)
    return path


# ---------------------------------------------------------------- column kinds

MIXED_CSV = ("colour,size,age,weight,flag\n"
             + "".join(f"{c},{s},{a},{w},{f}\n" for c, s, a, w, f in [
                 ("red", "1", "30", "1.5", "0"), ("blue", "2", "41", "", "1"), ("", "10", "52", "-0.25", "1"),
                 ("green", "1.0", "", "3.0", "0"), ("red", "2", "63", "2.75", ""), ("blue", "", "24", "0.5", "0"),
                 ("red", "10", "35", "1.25", "1"), ("green", "2", "46", "-1.5", "0"), ("blue", "1", "57", "0.75", "1"),
                 ("red", "2", "68", "4.5", "0"), ("green", "10", "29", "2.25", "1"), ("red", "1", "31", "0.125", "0")]))


def test_kinds_levels_and_integer_columns_are_inferred(tmp_path):
    data = load_table(write(tmp_path / "t.csv", MIXED_CSV), valid_fraction=0, test_fraction=0)
    meta = data.meta
    # text -> categorical (sorted texts); 3 integer values -> categorical, ordered by value with
    # "1" and "1.0" one level (written as first seen); 11 integer values -> numeric, integer;
    # floats -> numeric; binary -> categorical.
    assert meta["levels"] == [["blue", "green", "red"], ["1", "2", "10"], None, None, ["0", "1"]]
    assert meta["integer"] == [False, False, True, False, False]
    assert meta["mean"][0] == 0 and meta["std"][0] == 1 and meta["mean"][2] != 0
    _, rows, _ = read_rows(tmp_path / "t.csv")
    train = data.train.numpy()
    order = {tuple(row) for row in rows}
    assert len(order) == len(rows)
    colour = {"blue": 0, "green": 1, "red": 2, "": None}
    size = {"1": 0, "1.0": 0, "2": 1, "10": 2, "": None}
    expect = sorted((colour[r[0]] if colour[r[0]] is not None else -1,
                     size[r[1]] if size[r[1]] is not None else -1) for r in rows)
    got = sorted((-1 if np.isnan(c) else int(c), -1 if np.isnan(s) else int(s)) for c, s in train[:, :2])
    assert got == expect
    assert np.isnan(train).sum() == sum(cell == "" for row in rows for cell in row)


def test_overrides_and_their_errors(tmp_path):
    path = write(tmp_path / "t.csv", MIXED_CSV)
    data = load_data({"kind": "table", "source": str(path), "valid_fraction": 0, "test_fraction": 0,
                      "categorical": ["age"], "numeric": ["size", "flag"]})
    levels = data.meta["levels"]
    assert levels[1] is None and levels[4] is None and len(levels[2]) == 11
    assert data.meta["integer"][1] and data.meta["integer"][4]
    with pytest.raises(DataError, match="'colour' is not numeric"):
        load_table(path, numeric=["colour"])
    with pytest.raises(UserError, match=r"\['size'\] are in both"):
        load_table(path, categorical=["size"], numeric=["size"])
    with pytest.raises(DataError, match="no such column"):
        load_table(path, categorical=["height"])
    with pytest.raises(UserError, match="list of column names"):
        load_table(path, categorical="age")


def test_a_level_only_the_test_rows_have_keeps_its_id_and_unseen_input_levels_are_named(tmp_path):
    rows = [("a" if i % 2 else "b", f"{i * 0.37:.3f}") for i in range(40)] + [("rare", "1.5")]
    path = write(tmp_path / "t.csv", "k,v\n" + "".join(f"{k},{v}\n" for k, v in rows))
    for seed in range(5):
        data = load_table(path, valid_fraction=0.25, test_fraction=0.25, seed=seed)
        assert data.meta["levels"][0] == ["a", "b", "rare"]
        everything = torch.cat([data.train, data.split("valid"), data.split("test")])
        assert (everything[:, 0] == 2).sum() == 1
    meta = {**data.meta, "dim": 2}
    write(tmp_path / "in.csv", "k,v\na,\nzzz,0.5\n")
    with pytest.raises(DataError) as err:
        impute_file(mixed_model([3, None]), meta, tmp_path / "in.csv", tmp_path / "out.csv")
    assert "'k'" in str(err.value) and "'zzz'" in str(err.value) and "line 3" in str(err.value)
    assert not (tmp_path / "out.csv").exists()


def test_constant_and_identifier_like_categorical_columns_are_refused(tmp_path):
    with pytest.raises(DataError, match="'k' is constant"):
        load_table(write(tmp_path / "a.csv", "k,v\n" + "".join(f"x,{i}.5\n" for i in range(20))))
    with pytest.raises(DataError, match="1001 distinct values"):
        load_table(write(tmp_path / "b.csv", "k,v\n" + "".join(f"id{i},{i}.5\n" for i in range(1001))))


# ---------------------------------------------------------------- the head and the network

def test_table_head_normalises_each_categorical_column_over_its_own_levels():
    head = TableHead(LEVELS, components=3)
    params = torch.randn(5, 4, head.params_per_variable) * 3
    for j, k in enumerate(LEVELS):
        if k is None:
            continue
        values = torch.arange(k).float().view(k, 1).expand(k, 5)
        var = torch.full_like(values, j, dtype=torch.long)
        logp = head.log_prob(params[:, j].expand(k, 5, -1), values, var)
        assert torch.allclose(logp.exp().sum(0), torch.ones(5), atol=1e-6)
        changed = params.clone()
        changed[:, j, k:] += 100.0     # logits beyond K_j are masked out
        assert torch.allclose(head.log_prob(changed[:, j].expand(k, 5, -1), values, var), logp)
    # numeric columns are the mixture of Gaussians of the first 3C params
    x = torch.randn(5, 4)
    gauss = MixtureOfGaussiansHead(3).log_prob(params[..., :9], x)
    assert torch.allclose(head.log_prob(params, torch.where(torch.tensor([True, False, True, False]), 0.0, x))[:, [1, 3]],
                          gauss[:, [1, 3]])


def test_table_head_checks_level_ids():
    head = TableHead(LEVELS)
    good = torch.tensor([[2.0, -1.5, 1.0, 7.0]])
    head.check_values(good)
    for bad in ([[3.0, 0, 0, 0]], [[0.5, 0, 0, 0]], [[0, 0, -1.0, 0]]):
        with pytest.raises(UserError, match="level ids"):
            head.check_values(torch.tensor(bad))
    with pytest.raises(UserError, match="floating-point"):
        head.check_values(torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(UserError, match="level count"):
        TableHead([1, None])


def test_resmlp_sees_categorical_columns_one_hot():
    net = ResMLP(4, None, 6, width=8, depth=1, levels=LEVELS)
    x = torch.tensor([[2.0, 0.7, 1.0, -0.3], [0.0, 1.1, 0.0, 2.0]])
    observed = torch.tensor([[True, True, True, False], [True, False, True, True]])
    expect = torch.tensor([[0.0, 0.7, 0.0, 0.0, 0, 0, 1, 0, 1, 1, 1, 1, 0],
                           [0.0, 0.0, 0.0, 2.0, 1, 0, 0, 1, 0, 1, 0, 1, 1]])
    assert torch.equal(net._features(x, observed), expect)
    assert net.input.in_features == 4 + 5 + 4


def test_old_and_pure_numeric_tables_keep_the_gaussian_head_and_its_weights():
    config = load_config("magic-cpu", ["net.width=16", "net.depth=1"])
    old = {"kind": "table", "dim": 3, "num_classes": None, "columns": ["a", "b", "c"],
           "mean": [0.0] * 3, "std": [1.0] * 3}                      # a checkpoint from before levels
    new = {**old, "levels": [None] * 3, "integer": [True, False, False]}
    a, b = build_model(config, old), build_model(config, new)
    assert type(a.head) is type(b.head) is MixtureOfGaussiansHead
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    mixed = build_model(config, {**new, "levels": [["x", "y"], None, None]})
    assert isinstance(mixed.head, TableHead) and mixed.network.one_hot_width == 2
    with pytest.raises(ConfigError) as err:
        build_model(load_config("magic-ace-cpu"), {**new, "levels": [["x", "y"], None, None]})
    assert "categorical" in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------- the model: normalisation, sampling

def test_categorical_conditionals_sum_to_one_and_mixed_joints_normalise():
    model = mixed_model()
    x = mixed_rows(3)
    with torch.no_grad():
        for j in (0, 2):                                  # one categorical column given the rest
            target = torch.zeros(3, 4, dtype=torch.bool)
            target[:, j] = True
            total = torch.zeros(3, dtype=torch.float64)
            for k in range(LEVELS[j]):
                xk = x.clone()
                xk[:, j] = k
                total += model.conditional_log_prob(xk, target, ~target).double().exp()
            assert torch.allclose(total, torch.ones(3, dtype=torch.float64), atol=1e-5)
        # both categorical columns given the numeric ones: the 3 x 2 joint sums to 1
        target = torch.tensor([True, False, True, False]).expand(3, 4)
        total = torch.zeros(3, dtype=torch.float64)
        for a in range(3):
            for b in range(2):
                xk = x.clone()
                xk[:, 0], xk[:, 2] = a, b
                total += model.conditional_log_prob(xk, target, ~target).double().exp()
        assert torch.allclose(total, torch.ones(3, dtype=torch.float64), atol=1e-5)
        # a numeric and a categorical column: Σ_k ∫ p(x_1, x_2 = k | x_0, x_3) dx_1 = 1 (quadrature
        # on a grid dense around every mixture component of p(x_1 | x_0, x_3), wide for the tails)
        grid = quadrature_grid(model.head, model(x[:1], torch.tensor([[True, False, False, True]]))[0, 1])
        target = torch.tensor([False, True, True, False]).expand(len(grid), 4)
        row = x[:1].expand(len(grid), 4).clone()
        row[:, 1] = grid
        total = 0.0
        for k in range(2):
            row[:, 2] = k
            total += torch.trapezoid(model.conditional_log_prob(row, target, ~target).double().exp(), grid.double())
        assert float(total) == pytest.approx(1.0, abs=2e-3)


def test_sampling_a_categorical_cell_matches_its_conditional():
    model = mixed_model(seed=1)
    x = mixed_rows(1, seed=3)
    observed = torch.tensor([[False, True, True, True]])
    n = 6000
    draws = model.sample(x.expand(n, 4).clone(), observed.expand(n, 4), generator=torch.Generator().manual_seed(0))
    assert torch.equal(draws[:, 1:], x[:, 1:].expand(n, 3))
    freq = torch.bincount(draws[:, 0].long(), minlength=3).double() / n
    rows = x.expand(3, 4).clone()
    rows[:, 0] = torch.arange(3).float()
    target = torch.tensor([True, False, False, False]).expand(3, 4)
    with torch.no_grad():
        exact = model.conditional_log_prob(rows, target, ~target).double().exp()
    assert exact.max() < 0.95                               # a real check, not a point mass
    assert 0.5 * (freq - exact).abs().sum() < 0.02
    mode = model.conditional_mean(x, observed)[0, 0]
    assert mode == exact.argmax()
    assert torch.equal(model.sample(x.clone(), observed, temperature=0)[0, 0], mode)


def test_conditional_mean_is_the_mixture_mean_for_numbers_and_the_mode_for_levels():
    model = mixed_model(seed=2)
    x = mixed_rows(4, seed=1)
    observed = torch.tensor([[True, False, False, True]]).expand(4, 4)
    fill = model.conditional_mean(x, observed)
    with torch.no_grad():
        params = model(x, observed)
    for i in range(4):
        logits = params[i, 2, :2]
        assert fill[i, 2] == logits.argmax()
        grid = quadrature_grid(model.head, params[i, 1])
        density = model.head.log_prob(params[i, 1].expand(len(grid), -1).unsqueeze(1), grid.unsqueeze(1),
                                      torch.ones(len(grid), 1, dtype=torch.long)).squeeze(1).double().exp()
        assert float(fill[i, 1]) == pytest.approx(float(torch.trapezoid(density * grid, grid)), abs=1e-3)


# ---------------------------------------------------------------- imputation

def holes_of(x, seed=0, p=0.4):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.rand(x.shape, generator=gen) < p
    hidden[hidden.all(-1), 1] = False
    return torch.where(hidden, float("nan"), x), hidden


def test_mixed_imputation_fills_levels_and_reduces_draws_per_kind():
    model = mixed_model()
    table, hidden = holes_of(mixed_rows(30))
    draws = impute(model, table, num_samples=7, reduce="sample", generator=torch.Generator().manual_seed(4))
    mean = impute(model, table, num_samples=7, reduce="mean", generator=torch.Generator().manual_seed(4))
    for fill in (*draws, mean, impute(model, table, reduce="conditional-mean")):
        assert torch.equal(fill[~hidden].view(torch.int32), table[~hidden].view(torch.int32))
        assert torch.isfinite(fill).all()
        for j, k in enumerate(LEVELS):
            if k:
                assert set(fill[:, j].tolist()) <= set(range(k))
    values = draws.numpy()
    for i, j in zip(*np.nonzero(hidden.numpy())):
        cell = values[:, i, j]
        if LEVELS[j]:
            counts = np.bincount(cell.astype(int), minlength=LEVELS[j])
            assert mean[i, j] == counts.argmax()             # most frequent, smallest on ties
        else:
            assert float(mean[i, j]) == pytest.approx(float(cell.mean()), abs=1e-5)


class FixedNet(NodeNetwork):
    """The same parameters for every row and node: every conditional is known in closed form."""

    def __init__(self, params):
        super().__init__()
        self.dim = params.shape[0]
        self.params = torch.nn.Parameter(params)

    def forward(self, x_in, observed):
        return self.params.expand(len(x_in), -1, -1)


def test_intervals_match_the_closed_form_and_the_draws():
    levels = [None, 3, None]
    head = TableHead(levels, components=1)
    params = torch.zeros(3, head.params_per_variable)
    params[0, :3] = torch.tensor([0.0, 2.0, 0.5])          # logit, mean, raw log-scale
    params[1, :3] = torch.tensor([0.0, 1.0, -1.0])         # level logits
    params[2, :3] = torch.tensor([0.0, -1.0, -0.5])
    model = AnyOrderModel(FixedNet(params), head).eval()
    n, m = 40, 1000
    table = torch.full((n, 3), float("nan"))        # column 0 hidden; 1 or 2 hidden by halves
    table[n // 2:, 1] = 0.0
    table[: n // 2, 2] = 0.5
    result = impute_intervals(model, table, quantiles=(0.05, 0.5, 0.95), num_samples=m,
                              generator=torch.Generator().manual_seed(0))
    assert result.draws.shape == (m, n, 3) and result.quantiles.shape == (3, n, 3)
    _, means, log_scales = head.gaussian.mixture(params[[0, 2], :3])
    normal = torch.distributions.Normal(means.squeeze(-1), log_scales.exp().squeeze(-1))
    truth = torch.stack([normal.icdf(torch.tensor(q)) for q in (0.05, 0.5, 0.95)])      # [3, 2]
    missing = torch.isnan(table)
    for col, c in ((0, 0), (2, 1)):
        rows = missing[:, col]
        scale = float(log_scales[c].exp())
        assert (result.quantiles[:, rows, col] - truth[:, c:c + 1]).abs().mean() < 0.08 * scale
        brute = np.quantile(result.draws[:, rows, col].double().numpy(), [0.05, 0.5, 0.95], axis=0,
                            method="weibull")
        assert np.allclose(result.quantiles[:, rows, col].double().numpy(), brute, atol=1e-5)
        inside = ((result.draws[:, rows, col] > result.quantiles[0, rows, col]) &
                  (result.draws[:, rows, col] < result.quantiles[2, rows, col])).double().mean()
        assert abs(float(inside) - 0.9) < 0.01
    assert torch.isnan(result.quantiles[:, ~missing[:, 0], 0]).all() and torch.isnan(result.quantiles[:, :, 1]).all()
    exact = torch.softmax(params[1, :3], 0)
    shares = result.probabilities[: n // 2, 1]
    assert torch.allclose(shares.sum(-1), torch.ones(n // 2), atol=1e-5)
    assert (shares - exact).abs().max() < 0.06
    counts = torch.stack([(result.draws[:, : n // 2, 1] == k).double().mean(0) for k in range(3)], -1)
    assert torch.allclose(shares.double(), counts, atol=1e-6)
    assert (result.probabilities[n // 2:] == 0).all() and (result.probabilities[:, [0, 2]] == 0).all()
    assert torch.equal(result.fill, impute(model, table, num_samples=m, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("quantiles,num_samples,message", [
    ((0.0, 0.5), 100, "strictly between"), ((0.5, 1.0), 100, "strictly between"), (("x",), 100, "numbers"),
    ((), 100, "strictly between"), ((0.05, 0.95), 19, "need at least 20"), ((0.25,), 3, "need at least 4")])
def test_quantile_arguments_are_checked(quantiles, num_samples, message):
    with pytest.raises(UserError, match=message):
        check_quantiles(quantiles, num_samples)
    assert check_quantiles((0.05, 0.95), 20) == (0.05, 0.95)


def test_intervals_file_sits_beside_the_output():
    assert intervals_path("/a/filled.csv").name == "filled.intervals.csv"
    assert intervals_path("/a/filled.tsv.gz").name == "filled.intervals.tsv.gz"
    assert intervals_path("/a/filled").name == "filled.intervals.csv"


# ---------------------------------------------------------------- end to end through the CLI

def test_a_mixed_csv_trains_imputes_samples_and_evaluates(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 240
    colour = rng.choice(["Red", "green", "deep blue"], n)
    count = rng.integers(0, 40, n)
    weight = rng.normal(size=n) + (colour == "Red") * 2
    lines = ["colour,count,weight"]
    styles = ["{:.2f}", "{:+.3f}", "{:.1e}"]
    for i in range(n):
        cells = [colour[i], str(count[i]) if i % 5 else f"{count[i]}.0", styles[i % 3].format(weight[i])]
        for j in range(3):
            if rng.random() < 0.15:
                cells[j] = ["", "NA", "?"][(i + j) % 3]
        if all(c in ("", "NA", "?") for c in cells):
            cells[0] = "green"
        lines.append(",".join(cells))
    source = write(tmp_path / "train.csv", "\n".join(lines) + "\n")
    run = tmp_path / "run"
    assert main(["train", "--quiet", "--config", "magic-cpu", f"data.source={source}", "net.width=16", "net.depth=1",
                 "train.steps=12", "train.batch_size=16", "train.eval_every=6", "train.eval_rows=16",
                 f"train.out={run}"]) == 0
    given = write(tmp_path / "holes.csv", "\n".join(lines[:41]) + "\n")
    out = tmp_path / "filled.csv"
    assert main(["impute", str(run), "--input", str(given), "--output", str(out), "--num-samples", "20",
                 "--quantiles", "0.05,0.95", "--quiet"]) == 0
    _, before, _ = read_rows(given)
    _, after, _ = read_rows(out)
    assert len(after) == len(before) == 40
    holes = 0
    for old, new in zip(before, after):
        for j, (a, b) in enumerate(zip(old, new)):
            if a in ("", "NA", "?"):
                holes += 1
                assert b in {"Red", "green", "deep blue"} if j == 0 else b != ""
                if j == 1:
                    assert b.lstrip("-").isdigit()                 # an integer column, written as one
                if j == 2:
                    assert math.isfinite(float(b))
            else:
                assert a == b                                      # observed text byte for byte
    side = read_rows(intervals_path(out))
    assert side[0] == ["row", "column", "fill", "q0.05", "q0.95", "probability", "probabilities"]
    assert len(side[1]) == holes
    for row, column, fill, low, high, probability, probabilities in side[1]:
        assert after[int(row)][["colour", "count", "weight"].index(column)] == fill
        if column == "colour":
            shares = json.loads(probabilities)
            assert set(shares) <= {"Red", "green", "deep blue"} and sum(shares.values()) == pytest.approx(1, abs=1e-5)
            assert float(probability) == shares[fill] == max(shares.values())
        else:
            assert float(low) <= float(high) and probability == probabilities == ""
    capsys.readouterr()
    assert main(["impute", str(run), "--input", str(given), "--output", str(out), "--num-samples", "3",
                 "--quantiles", "0.05,0.95"]) == 2
    assert "need at least 20" in capsys.readouterr().err
    assert main(["impute", str(run), "--input", str(given), "--output", str(out), "--steps", "2", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--num", "5"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "colour\tcount\tweight"
    assert all(line.split("\t")[0] in {"Red", "green", "deep blue"} for line in printed[1:6])
    assert main(["eval", str(run), "--quiet"]) == 0
    assert "nats per row" in capsys.readouterr().out


def test_policies_refuse_categorical_columns(tmp_path):
    from anyorder.control import ConditionalPolicy
    path = write(tmp_path / "t.csv", "s,flag,a\n" + "".join(f"{i * 0.1:.1f},{i % 2},{i * 0.3:.1f}\n" for i in range(30)))
    with pytest.raises(UserError, match=r"numeric=\['flag'\]"):
        ConditionalPolicy.for_table(load_table(path), 2)
    assert ConditionalPolicy.for_table(load_table(path, numeric=["flag"]), 2, width=8, depth=1).dim == 3


def test_impute_file_writes_levels_integers_and_every_draw(tmp_path):
    meta = {"dim": 4, "columns": ["colour", "x", "flag", "n"], "mean": [0.0, 10.0, 0.0, 50.0],
            "std": [1.0, 2.0, 1.0, 20.0], "levels": [["blue", "red", "green"], None, ["no", "yes"], None],
            "integer": [False, False, False, True]}
    write(tmp_path / "in.tsv", "colour\tx\tflag\tn\nred\t\tyes\t\n\t9.50\t\t41\ngreen\t11\tno\t\n")
    out = tmp_path / "out.csv"
    values = impute_file(mixed_model(), meta, tmp_path / "in.tsv", out, num_samples=2, reduce="sample", seed=3)
    names, rows, _ = read_rows(out)
    assert names == ["draw", "colour", "x", "flag", "n"] and len(rows) == 6 and values.shape == (6, 5)
    for row, given in zip(rows, 2 * [["red", "", "yes", ""], ["", "9.50", "", "41"], ["green", "11", "no", ""]]):
        for cell, text, levels in zip(row[1:], given, meta["levels"]):
            assert cell == text if text else cell != ""
        assert row[1] in meta["levels"][0] and row[3] in meta["levels"][2]
        assert row[4].lstrip("-").isdigit() and float(row[2]) == float(row[2])
    assert np.array_equal(values[:, 4], np.round(values[:, 4]))


def test_intervals_from_few_draws_cover_fresh_values_at_the_nominal_rate():
    # With M = 20 draws the 5%/95% places q(M+1)-1 cover a fresh value 90% of the time
    # (the places q(M-1) would cover only 0.9 (M-1)/(M+1) = 81%).
    head = TableHead([None, 3], components=1)
    params = torch.zeros(2, head.params_per_variable)
    params[0, :3] = torch.tensor([0.0, 1.0, 0.3])
    model = AnyOrderModel(FixedNet(params), head).eval()
    n = 6000
    table = torch.zeros(n, 2)
    table[:, 0] = float("nan")
    generator = torch.Generator().manual_seed(1)
    result = impute_intervals(model, table, quantiles=(0.05, 0.95), num_samples=20, generator=generator)
    fresh = model.sample(torch.zeros(n, 2), ~torch.isnan(table), generator=generator)[:, 0]
    inside = ((fresh > result.quantiles[0, :, 0]) & (fresh < result.quantiles[1, :, 0])).double().mean()
    assert abs(float(inside) - 0.9) < 0.015          # SE of the rate: 0.004 over the rows
