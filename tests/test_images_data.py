import gzip
import pickle
import struct
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

from anyorder.data.base import DataError
from anyorder.data.images import load_images


def write_cifar(folder, rows_per_batch=4, test_rows=3, data=None):
    """A miniature cifar-10-batches-py folder in the official pickle format."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = {}
    for name in names:
        n = test_rows if name == "test_batch" else rows_per_batch
        batch = rng.integers(0, 256, (n, 3072), dtype=np.uint8) if data is None else data
        batches[name] = batch
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": batch,
                         b"labels": rng.integers(0, 10, len(batch)).tolist()}, f, protocol=2)
    return batches


def write_idx(file, images, magic=b"\x00\x00\x08\x03"):
    header = magic + struct.pack(">3I", *images.shape)
    opener = gzip.open if file.suffix == ".gz" else open
    with opener(file, "wb") as f:
        f.write(header + images.astype(np.uint8).tobytes())


def check_one_line(err):
    assert "\n" not in str(err.value)


def test_mnist_from_shared_folder(shared_data):
    folder = shared_data / "images" / "mnist"
    if not folder.is_dir():
        pytest.skip("no MNIST in the shared data")
    data = load_images("mnist", folder)
    assert (data.kind, data.dim, data.num_classes) == ("image", 784, 256)
    assert data.meta == {"source": "mnist", "shape": [1, 28, 28], "levels": 256}
    assert data.train.shape == (55_000, 784) and data.train.dtype == torch.uint8
    assert data.split("valid").shape == (5000, 784) and data.split("valid").dtype == torch.int64
    assert data.split("test").shape == (10_000, 784) and data.split("test").dtype == torch.int64
    batch = data.train_batch(8, torch.Generator().manual_seed(0))
    assert batch.shape == (8, 784) and batch.dtype == torch.int64
    assert 0 <= int(batch.min()) and int(batch.max()) <= 255 and int(batch.max()) > 200


def test_digits_split_and_levels():
    pytest.importorskip("sklearn")
    data = load_images("digits")
    assert (data.dim, data.num_classes, data.meta["shape"]) == (64, 17, [1, 8, 8])
    assert len(data.train) + len(data.split("valid")) + len(data.split("test")) == 1797
    assert len(data.split("valid")) == len(data.split("test")) == 180
    assert int(data.split("test").max()) == 16
    again = load_images("digits")
    assert torch.equal(again.split("valid"), data.split("valid"))


@pytest.mark.parametrize("via_parent", [True, False])
def test_cifar10_python_folder(tmp_path, via_parent):
    batches = write_cifar(tmp_path / "cifar-10-batches-py")
    data = load_images("cifar10", tmp_path if via_parent else tmp_path / "cifar-10-batches-py",
                       valid_size=3)
    assert (data.dim, data.num_classes, data.meta["shape"]) == (3072, 256, [3, 32, 32])
    assert data.train.shape == (17, 3072)
    assert torch.equal(data.split("valid"), torch.from_numpy(batches["data_batch_5"][1:]).long())
    assert torch.equal(data.split("test"), torch.from_numpy(batches["test_batch"]).long())
    assert torch.equal(data.train[:4], torch.from_numpy(batches["data_batch_1"]))


def test_imagenet32_npz(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "Imagenet32_train_npz").mkdir()
    train = [rng.integers(0, 256, (3, 3072), dtype=np.uint8) for _ in range(10)]
    for i, batch in enumerate(train, 1):
        np.savez(tmp_path / "Imagenet32_train_npz" / f"train_data_batch_{i}.npz", data=batch,
                 labels=np.arange(3), mean=np.zeros(3072))
    val = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
    np.savez(tmp_path / "val_data.npz", data=val, labels=np.arange(2))
    data = load_images("imagenet32", tmp_path, valid_size=5)
    assert data.dim == 3072 and data.meta["shape"] == [3, 32, 32]
    everything = torch.from_numpy(np.concatenate(train))
    assert torch.equal(data.train, everything[:25])
    assert torch.equal(data.split("valid"), everything[25:].long())
    assert torch.equal(data.split("test"), torch.from_numpy(val).long())


def test_corrupt_idx_magic_number(tmp_path):
    images = np.zeros((5, 28, 28), np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images, magic=b"\x00\x00\x08\x01")
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images)
    with pytest.raises(DataError, match="magic number") as err:
        load_images("mnist", tmp_path, valid_size=1)
    check_one_line(err)


def test_idx_files_gzipped_or_not(tmp_path):
    images = np.arange(6 * 4 * 4).reshape(6, 4, 4) % 256
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images[:2])
    data = load_images("fashion-mnist", tmp_path, valid_size=2)
    assert data.meta["shape"] == [1, 4, 4] and data.train.shape == (4, 16)
    assert torch.equal(data.split("test"), torch.from_numpy(images[:2].reshape(2, 16)))


def test_wrong_folders(tmp_path):
    (tmp_path / "notes.txt").write_text("not cifar")
    with pytest.raises(DataError, match="not a cifar-10-batches-py folder") as err:
        load_images("cifar10", tmp_path)
    check_one_line(err)
    with pytest.raises(DataError, match="no train-images-idx3-ubyte"):
        load_images("mnist", tmp_path)
    with pytest.raises(DataError, match="no folder"):
        load_images("mnist", tmp_path / "absent")
    with pytest.raises(DataError, match="unknown image source"):
        load_images("svhn")


def test_corrupt_or_hostile_pickle(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "data_batch_2").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError, match="not a CIFAR-10 python batch") as err:
        load_images("cifar10", tmp_path)
    check_one_line(err)
    with open(tmp_path / "data_batch_2", "wb") as f:
        pickle.dump({b"data": print}, f)                   # would call code on load
    with pytest.raises(DataError, match="unexpected object"):
        load_images("cifar10", tmp_path)


def test_pixel_values_out_of_range(tmp_path):
    data = np.full((2, 3072), 300, np.int16)
    write_cifar(tmp_path / "cifar", data=data)
    with pytest.raises(DataError, match="out of range") as err:
        load_images("cifar10", tmp_path / "cifar", valid_size=1)
    check_one_line(err)


def test_flips_are_mirror_images_and_reproducible(tmp_path):
    write_cifar(tmp_path / "c", rows_per_batch=6)
    plain = load_images("cifar10", tmp_path / "c", valid_size=0)
    flipping = load_images("cifar10", tmp_path / "c", valid_size=0, flip=True)
    x = plain.train_batch(64, torch.Generator().manual_seed(3)).view(64, 3, 32, 32)
    y = flipping.train_batch(64, torch.Generator().manual_seed(3)).view(64, 3, 32, 32)
    same = (x == y).flatten(1).all(1)
    mirrored = (x.flip(-1) == y).flatten(1).all(1)
    assert (same | mirrored).all() and same.any() and mirrored.any()
    assert "valid" not in flipping.splits
    again = flipping.train_batch(64, torch.Generator().manual_seed(3)).view(64, 3, 32, 32)
    assert torch.equal(again, y)


def test_dihedral_draws_the_8_symmetries_of_the_square_uniformly(tmp_path):
    write_cifar(tmp_path / "c", rows_per_batch=6)
    plain = load_images("cifar10", tmp_path / "c", valid_size=0)
    turning = load_images("cifar10", tmp_path / "c", valid_size=0, dihedral=True)
    n = 4000
    x = plain.train_batch(n, torch.Generator().manual_seed(3)).view(n, 3, 32, 32)
    y = turning.train_batch(n, torch.Generator().manual_seed(3)).view(n, 3, 32, 32)
    # The 8 symmetries, listed independently of the sampler: 4 rotations, with and without a mirror.
    symmetries = [torch.rot90(image, k, (-2, -1)) for image in (x, x.flip(-1)) for k in range(4)]
    matches = torch.stack([(s == y).flatten(1).all(1) for s in symmetries], 1)     # [n, 8]
    assert (matches.sum(1) == 1).all()                  # every draw is exactly one symmetry
    freq = matches.double().mean(0)
    assert 0.5 * (freq - 1 / 8).abs().sum() < 0.03      # uniform: E[TV] ≈ 0.017 at n = 4000
    again = turning.train_batch(n, torch.Generator().manual_seed(3)).view(n, 3, 32, 32)
    assert torch.equal(again, y)


def test_dihedral_needs_square_images(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (20, 4, 6))
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        write_idx(tmp_path / name, images)
    with pytest.raises(DataError, match="must be square") as err:
        load_images("mnist", tmp_path, valid_size=2, dihedral=True)
    check_one_line(err)


def test_missing_cache_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("ANYORDER_CACHE", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="downloading .* failed") as err:
        load_images("cifar10")
    check_one_line(err)
    assert str(tmp_path / "cifar10") in str(err.value)
    with pytest.raises(DataError, match="image-net.org"):
        load_images("imagenet32")


def test_a_partial_cifar_folder_trains_on_the_batches_it_has(tmp_path):
    batches = write_cifar(tmp_path, rows_per_batch=6)
    for name in ("data_batch_2", "data_batch_5"):
        (tmp_path / name).unlink()
    data = load_images("cifar10", tmp_path, valid_size=4)
    kept = np.concatenate([batches[f"data_batch_{i}"] for i in (1, 3, 4)])
    assert torch.equal(data.train, torch.from_numpy(kept[:-4])) and data.split("valid").shape == (4, 3072)
    with pytest.raises(DataError, match="valid_size 18 leaves no training rows: cifar10 has 18"):
        load_images("cifar10", tmp_path, valid_size=18)
    for i in (1, 3, 4):
        (tmp_path / f"data_batch_{i}").unlink()
    with pytest.raises(DataError, match=r"missing data_batch_\*"):
        load_images("cifar10", tmp_path)
