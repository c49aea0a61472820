import gzip

import numpy as np
import pytest
import torch

from anyorder.data.base import DataError
from anyorder.data.tables import load_table, read_table, standardise, table_dataset, unstandardise, write_table


def write(path, text, compress=False):
    if compress:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def numeric_rows(n=40, seed=0, delimiter=","):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n, 3)) * [1, 10, 100] + [0, 5, -50]
    return data, "\n".join(delimiter.join(f"{v:.6f}" for v in row) for row in data) + "\n"


# ---------------------------------------------------------------- the shared MAGIC table

def test_magic_has_eleven_columns_and_train_only_statistics(shared_data):
    path = shared_data / "tabular" / "magic.tsv.gz"
    data = load_table(path)
    assert data.kind == "table" and data.dim == 11 and data.num_classes is None
    assert data.meta["columns"][0] == "FLength" and data.meta["columns"][-1] == "target"
    assert data.train.dtype == torch.float32
    assert len(data.train) + len(data.split("valid")) + len(data.split("test")) == 19020
    assert len(data.split("test")) == len(data.split("valid")) == 1902
    # The binary target is inferred categorical (ids 0/1); numeric=["target"] keeps it a number.
    assert data.meta["levels"] == [None] * 10 + [["0", "1"]]
    assert set(data.train[:, -1].tolist()) == {0.0, 1.0}
    data = load_table(path, numeric=["target"])
    assert data.meta["levels"] == [None] * 11
    assert torch.allclose(data.train.mean(0), torch.zeros(11), atol=1e-4)
    assert torch.allclose(data.train.std(0, unbiased=False), torch.ones(11), atol=1e-4)
    test_mean = data.split("test").double().mean(0)
    assert test_mean.abs().max() > 1e-3 and test_mean.abs().max() < 0.2


def test_magic_split_is_deterministic_and_maps_back_to_file_units(shared_data):
    path = shared_data / "tabular" / "magic.tsv.gz"
    a, b, c = (load_table(path, seed=seed, numeric=["target"]) for seed in (0, 0, 1))
    assert torch.equal(a.train, b.train) and torch.equal(a.split("test"), b.split("test"))
    assert not torch.equal(a.split("test"), c.split("test"))
    _, raw = read_table(path)
    back = unstandardise(a.split("test").double(), a.meta).numpy()
    nearest = np.abs(raw[None] - back[:50, None]).max(-1).min(-1)
    assert nearest.max() < 1e-3
    assert np.allclose(standardise(raw, a.meta).mean(0), 0, atol=0.05)


# ---------------------------------------------------------------- file formats

@pytest.mark.parametrize("delimiter,suffix", [(",", ".csv"), (";", ".csv"), ("\t", ".tsv"),
                                              (" ", ".txt"), ("   ", ".dat")])
def test_delimiters_without_header(tmp_path, delimiter, suffix):
    data, text = numeric_rows(delimiter=delimiter)
    names, table = read_table(write(tmp_path / f"t{suffix}", text))
    assert names == ["col1", "col2", "col3"]
    assert np.allclose(table, data, atol=1e-6)


def test_header_is_detected_and_gzip_is_read(tmp_path):
    data, text = numeric_rows()
    path = write(tmp_path / "t.csv.gz", '"a",b,c 1\n' + text, compress=True)
    names, table = read_table(path)
    assert names == ["a", "b", "c 1"]
    assert np.allclose(table, data, atol=1e-6)
    dataset = load_table(path, valid_fraction=0.25, test_fraction=0.25)
    assert dataset.meta["columns"] == ["a", "b", "c 1"] and len(dataset.train) == 20


def test_missing_cells_are_kept_as_nan(tmp_path):
    rows = ["x,y,z"] + [f"{i},{'' if i % 3 == 0 else i * 2},{'NaN' if i % 4 == 0 else 'NA' if i % 5 == 0 else -i}"
                        for i in range(1, 61)]
    path = write(tmp_path / "holes.csv", "\n".join(rows) + "\n")
    _, table = read_table(path)
    assert np.isnan(table[:, 1]).sum() == 20 and np.isnan(table[:, 2]).sum() == 15 + 9
    data = load_table(path, valid_fraction=0, test_fraction=0)
    assert set(data.splits) == set()
    assert torch.isnan(data.train).sum() == 20 + 24
    observed = data.train[:, 1][~torch.isnan(data.train[:, 1])]
    assert abs(float(observed.mean())) < 1e-5 and abs(float(observed.std(unbiased=False)) - 1) < 1e-5


# ---------------------------------------------------------------- user-facing errors

def one_line_error(excinfo, *words):
    message = str(excinfo.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_missing_file(tmp_path):
    with pytest.raises(DataError) as e:
        load_table(tmp_path / "nope.csv")
    one_line_error(e, "nope.csv", "not found")


def test_non_numeric_column_is_named(tmp_path):
    path = write(tmp_path / "t.csv", "a,colour,b\n1,red,2\n3,blue,4\n")
    with pytest.raises(DataError) as e:
        read_table(path)
    one_line_error(e, "t.csv", "'colour'", "not numeric", "line 2")


def test_constant_column_in_train(tmp_path):
    path = write(tmp_path / "t.csv", "a,b\n" + "".join(f"{i},7\n" for i in range(30)))
    with pytest.raises(DataError) as e:
        load_table(path)
    one_line_error(e, "'b'", "constant")


def test_all_missing_column(tmp_path):
    path = write(tmp_path / "t.csv", "a,b\n" + "".join(f"{i},\n" for i in range(30)))
    with pytest.raises(DataError) as e:
        load_table(path)
    one_line_error(e, "'b'", "entirely missing")


def test_infinite_value(tmp_path):
    path = write(tmp_path / "t.csv", "a,b\n1,2\n3,inf\n5,6\n")
    with pytest.raises(DataError) as e:
        read_table(path)
    one_line_error(e, "'b'", "infinite", "line 3")


def test_entirely_missing_rows_are_read_and_skipped_in_training_with_a_count(tmp_path):
    path = write(tmp_path / "t.csv", "a,b\n1,2\n,\n5,6\n7,\n,\n")
    assert np.isnan(read_table(path)[1][[1, 4]]).all()
    with pytest.warns(UserWarning, match="skipped 2 of 5 rows with every cell missing"):
        data = load_table(path, valid_fraction=0, test_fraction=0)
    assert len(data.train) == 3 and not torch.isnan(data.train).all(1).any()
    with pytest.raises(DataError, match="entirely missing"):
        load_table(write(tmp_path / "e.csv", "a,b\n,\nNA,?\n"), valid_fraction=0, test_fraction=0)


def test_decimals_and_nonnegative_columns_are_recorded(tmp_path):
    path = write(tmp_path / "t.csv", "a,b,c\n317.6,-1,1.5e-3\n2,4.25,0\n3.10,,2E+2\n4,5,1\n")
    meta = load_table(path, valid_fraction=0, test_fraction=0).meta
    assert meta["decimals"] == [2, 2, 4]             # "3.10" shows 2; "4.25" 2; "1.5e-3" 4
    assert meta["nonnegative"] == [True, False, True]


@pytest.mark.parametrize("text", ["", "\n\n", "a,b\n"])
def test_empty_table(tmp_path, text):
    with pytest.raises(DataError) as e:
        read_table(write(tmp_path / "t.csv", text))
    one_line_error(e, "t.csv")


def test_ragged_row(tmp_path):
    with pytest.raises(DataError) as e:
        read_table(write(tmp_path / "t.csv", "1,2,3\n4,5\n"))
    one_line_error(e, "line 2", "2 cells", "expected 3")


# ---------------------------------------------------------------- MAF's UCI sets (synthetic files)

def maf_power_reference(raw):
    """MAF's datasets/power.py, restated."""
    rng = np.random.RandomState(42)
    data = raw.copy()
    rng.shuffle(data)
    n = data.shape[0]
    data = np.delete(data, 3, axis=1)
    data = np.delete(data, 1, axis=1)
    voltage_noise = 0.01 * rng.rand(n, 1)
    gap_noise = 0.001 * rng.rand(n, 1)
    sm_noise = rng.rand(n, 3)
    data = data + np.hstack((gap_noise, voltage_noise, sm_noise, np.zeros((n, 1))))
    n_test = int(0.1 * n)
    test, data = data[-n_test:], data[:-n_test]
    n_valid = int(0.1 * data.shape[0])
    valid, train = data[-n_valid:], data[:-n_valid]
    both = np.vstack((train, valid))
    mu, s = both.mean(0), both.std(0)
    return (train - mu) / s, (valid - mu) / s, (test - mu) / s


def test_power_follows_maf(tmp_path):
    raw = np.random.default_rng(0).normal(size=(1000, 8)) * 3 + 1
    (tmp_path / "power").mkdir()
    np.save(tmp_path / "power" / "data.npy", raw)
    data = load_table("power", path=tmp_path)
    train, valid, test = maf_power_reference(raw)
    assert data.dim == 6 and data.meta["source"] == "power"
    assert np.allclose(data.train.numpy(), train, atol=1e-5)
    assert np.allclose(data.split("valid").numpy(), valid, atol=1e-5)
    assert np.allclose(data.split("test").numpy(), test, atol=1e-5)
    mu, sd = np.asarray(data.meta["mean"]), np.asarray(data.meta["std"])
    assert np.allclose(unstandardise(data.split("test").double(), data.meta).numpy(), test * sd + mu)
    assert sd.min() > 0.5  # the constants of the noisy raw columns, not 0/1


def test_miniboone_from_cache_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("ANYORDER_CACHE", raising=False)       # then $XDG_CACHE_HOME/anyorder
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    raw = np.random.default_rng(1).normal(size=(500, 5))
    (tmp_path / "anyorder" / "miniboone").mkdir(parents=True)
    np.save(tmp_path / "anyorder" / "miniboone" / "data.npy", raw)
    data = load_table("miniboone")
    assert (len(data.train), len(data.split("valid")), len(data.split("test"))) == (405, 45, 50)
    both = torch.cat([data.train, data.split("valid")]).double()
    assert torch.allclose(both.mean(0), torch.zeros(5, dtype=torch.float64), atol=1e-6)
    assert np.allclose(unstandardise(data.split("test").double(), data.meta).numpy(), raw[-50:], atol=1e-5)


def test_hepmass_follows_maf(tmp_path):
    rng = np.random.default_rng(2)
    header = "# label," + ",".join(f"f{i}" for i in range(4)) + ",mass"

    def rows(n, extra):
        label = rng.integers(0, 2, size=(n, 1))
        feats = rng.normal(size=(n, 4))
        feats[:, 2] = np.maximum(np.round(feats[:, 2]), 0)  # its minimum repeats: MAF removes it
        cols = [label, feats, np.full((n, 1), 1000.0) + rng.normal(size=(n, 1))]
        cols += [rng.normal(size=(n, 1))] if extra else []
        return np.hstack(cols)

    train, test = rows(400, False), rows(100, True)
    np.savetxt(tmp_path / "1000_train.csv", train, delimiter=",", header=header, comments="")
    np.savetxt(tmp_path / "1000_test.csv", test, delimiter=",", header=header + ",x", comments="")
    data = load_table("hepmass", path=tmp_path)
    signal = train[train[:, 0] == 1][:, 1:]
    mu, s = signal.mean(0), signal.std(0, ddof=1)
    keep = [0, 1, 3, 4]
    assert data.meta["columns"] == ["f0", "f1", "f3", "mass"]
    n_valid = int(0.1 * len(signal))
    expect = ((signal - mu) / s)[:, keep]
    assert np.allclose(data.train.numpy(), expect[:-n_valid], atol=1e-5)
    assert np.allclose(data.split("valid").numpy(), expect[-n_valid:], atol=1e-5)
    tsig = test[test[:, 0] == 1][:, 1:-1]
    assert np.allclose(data.split("test").numpy(), ((tsig - mu) / s)[:, keep], atol=1e-5)


def test_uci_set_missing_files_says_what_to_put_where(tmp_path):
    with pytest.raises(DataError) as e:
        load_table("miniboone", path=tmp_path)
    one_line_error(e, "data.npy", str(tmp_path), "miniboone")


def test_optional_readers_fail_clearly(tmp_path):
    (tmp_path / "BSDS300.hdf5").write_bytes(b"")
    (tmp_path / "ethylene_CO.pickle").write_bytes(b"")
    for name, package in (("bsds300", "h5py"), ("gas", "pandas")):
        try:
            __import__(package)
        except ImportError:
            with pytest.raises(DataError) as e:
                load_table(name, path=tmp_path)
            one_line_error(e, package)


def test_uci_download_without_network_is_a_one_line_hint(tmp_path, monkeypatch):
    import urllib.request

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setenv("ANYORDER_CACHE", str(tmp_path / "anyorder"))
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as e:
        load_table("power")
    one_line_error(e, "data.tar.gz", "data/power/", str(tmp_path / "anyorder" / "power"), "no network")


def test_uci_download_extracts_the_set_into_the_cache(tmp_path, monkeypatch):
    import io
    import tarfile
    import urllib.request

    raw = np.random.default_rng(3).normal(size=(200, 4))
    buffer = io.BytesIO()
    np.save(buffer, raw)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("data/miniboone/data.npy")
        info.size = len(buffer.getvalue())
        tar.addfile(info, io.BytesIO(buffer.getvalue()))
    monkeypatch.setenv("ANYORDER_CACHE", str(tmp_path / "anyorder"))
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: io.BytesIO(archive.getvalue()))
    data = load_table("miniboone")
    assert (tmp_path / "anyorder" / "miniboone" / "data.npy").is_file()
    assert np.allclose(unstandardise(data.split("test").double(), data.meta).numpy(), raw[-20:], atol=1e-5)


@pytest.mark.parametrize("name", ["out.csv", "out.tsv.gz"])
def test_write_table_round_trips_every_digit(tmp_path, name):
    values = np.array([[0.1, np.nan, -3.0], [1e-300, 123456789.123456789, 2 / 3]])
    write_table(tmp_path / name, ["a", "b", "c"], values)
    names, back = read_table(tmp_path / name)
    assert names == ["a", "b", "c"]
    assert np.array_equal(back, values, equal_nan=True)
    if name.endswith(".csv"):
        assert (tmp_path / name).read_text().splitlines()[1] == "0.1,,-3"


def test_drop_leaves_out_named_columns(tmp_path):
    data, _ = numeric_rows()
    write_table(tmp_path / "t.csv", ["a", "b", "c"], data)
    table = load_table(tmp_path / "t.csv", drop=["b"])
    assert table.meta["columns"] == ["a", "c"] and table.dim == 2
    with pytest.raises(DataError, match="no such column"):
        load_table(tmp_path / "t.csv", drop=["z"])
    with pytest.raises(DataError, match="leaves no column"):
        load_table(tmp_path / "t.csv", drop=["a", "b", "c"])
    with pytest.raises(ValueError, match="list of column names"):
        load_table(tmp_path / "t.csv", drop="b")


def test_binary_and_too_small_tables_say_what_is_wrong(tmp_path):
    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(DataError, match="model.bin is not a text table"):
        load_table(binary)
    small = tmp_path / "small.csv"
    small.write_text("a,b\n1,2\n3,5\n4,4\n")
    with pytest.raises(DataError, match="3 rows are too few for a valid split of 0.1.*valid_fraction=0"):
        load_table(small)
    assert len(load_table(small, valid_fraction=0, test_fraction=0).train) == 3


@pytest.mark.parametrize("scale", [1e300, 1e-300])
def test_columns_of_huge_or_tiny_values_standardise_as_their_unscaled_selves(scale):
    """A column's mean and std are those of the column scaled into [-1, 1], scaled back: a
    sum of squares of values near 1e160 overflows float64 (its std was inf, every fill -inf)."""
    rng = np.random.default_rng(0)
    table = rng.normal(size=(30, 2)) * [1.0, 5.0] + [3.0, -1.0]
    table[rng.random(table.shape) < 0.2] = np.nan
    names, levels = ["a", "b"], [None, None]
    plain = table_dataset("t", names, table, levels, [None, None], 0.0, 0.0, 0)
    scaled = table_dataset("t", names, table * scale, levels, [None, None], 0.0, 0.0, 0)
    assert np.allclose(scaled.meta["std"], np.asarray(plain.meta["std"]) * scale, rtol=1e-12, atol=0)
    assert torch.allclose(scaled.train, plain.train, atol=1e-6, equal_nan=True)
