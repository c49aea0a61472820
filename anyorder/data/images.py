"""Image data sets as flattened categorical variables.

Every channel of every pixel is one variable: an image `[C, H, W]` becomes a row of
D = C·H·W levels 0..K-1 in C,H,W order (`x.reshape(N, -1)`). K = 256 for 8-bit data and
17 for scikit-learn's 8x8 digits.

Memory: the training rows are kept as uint8 `[N, D]` (ImageNet32 would take 31 GB as
int64) and `batch_fn` turns each drawn batch into int64 (flipping it if asked), so
`Dataset.split("train")` is not available; the "valid" and "test" splits are int64
`[N, D]`. The validation split is the *last* `valid_size` rows of the official training
set (5000 by default, 10% for digits), so it never overlaps the rows trained on.

Files are the standard public ones: MNIST / Fashion-MNIST idx files (gzipped or not),
the CIFAR-10 python folder `cifar-10-batches-py`, and ImageNet32's npz batches. Without
a `path` they are looked for in `cache_dir(source)` and, where a public address exists,
downloaded there.
"""

from __future__ import annotations

import gzip
import pickle
import shutil
import struct
import tarfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import torch

from anyorder.data.base import DataError, DataIO, Dataset, cache_dir
from anyorder.paths import output_folder

SOURCES = ("digits", "mnist", "fashion-mnist", "cifar10", "imagenet32")
DEFAULT_VALID = 5000
DOWNLOAD_TIMEOUT_S = 10

_IDX_FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
_CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
_IMAGENET32_FILES = [f"train_data_batch_{i}.npz" for i in range(1, 11)] + ["val_data.npz"]
_DOWNLOADS = {
    "mnist": [f"https://ossci-datasets.s3.amazonaws.com/mnist/{name}.gz"
              for name in _IDX_FILES.values()],
    "fashion-mnist": [f"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{name}.gz"
                      for name in _IDX_FILES.values()],
    "cifar10": ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"],
}


class _Missing(DataError):
    """Expected files are absent (as opposed to present but broken)."""


def load_images(source: str = "digits", path: str | Path | None = None, flip: bool = False,
                valid_size: int | None = None, dihedral: bool = False) -> Dataset:
    """Load an image data set as `Dataset(kind="image", dim=C·H·W, num_classes=K)`.

    `path` is the folder holding the standard files (None: the cache, then a download);
    `flip` draws random horizontal flips in `train_batch`; `dihedral` draws each training
    image as one of the 8 symmetries of the square, uniformly (horizontal and vertical
    flips and 90° rotations, as the official MAC CIFAR-10 runs; it includes `flip`'s
    flips); `valid_size` rows are held out of the end of the training set (0: no "valid"
    split).
    """
    if source not in SOURCES:
        raise DataError(f"unknown image source {source!r}; expected one of {', '.join(SOURCES)}")
    if source == "digits":
        if path is not None:
            raise DataError("the digits come with scikit-learn; leave path unset for source 'digits'")
        train, test, shape, levels = _read_digits()
    else:
        train, test, shape = _read_files(source, path)
        levels = 256
    if dihedral and shape[1] != shape[2]:
        raise DataError(f"dihedral augmentation rotates images by 90°, so they must be square; "
                        f"{source} images are {shape[1]}x{shape[2]}")
    n_valid = _valid_rows(source, valid_size, len(train), len(train) + len(test))
    splits = {"test": torch.from_numpy(test).long()}
    if n_valid:
        splits["valid"] = torch.from_numpy(train[len(train) - n_valid:]).long()
    return Dataset(
        kind="image", dim=int(np.prod(shape)), num_classes=levels,
        train=torch.from_numpy(train[:len(train) - n_valid]), splits=splits,
        meta={"source": source, "shape": list(shape), "levels": levels},
        batch_fn=_batch_fn(shape, flip, dihedral))


def _valid_rows(source: str, valid_size: int | None, n_train: int, n_total: int) -> int:
    if valid_size is None:
        valid_size = round(0.1 * n_total) if source == "digits" else DEFAULT_VALID
    if not isinstance(valid_size, int) or isinstance(valid_size, bool) or valid_size < 0:
        raise DataError(f"valid_size must be an integer >= 0, got {valid_size!r}")
    if valid_size >= n_train:
        raise DataError(f"valid_size {valid_size} leaves no training rows: {source} has {n_train} "
                        f"training rows here; use a valid_size below {n_train}")
    return valid_size


def _batch_fn(shape: tuple[int, int, int], flip: bool, dihedral: bool):
    """Random rows of the uint8 training set as int64 `[B, D]`, each flipped left-right
    with probability 1/2 when `flip`; under `dihedral` also flipped top-bottom and
    transposed, each with probability 1/2: the three fair coins pick each of the 8
    symmetries of the square (the group they generate) with probability 1/8."""
    moves = [lambda images: images.flip(-1)] if flip or dihedral else []
    if dihedral:
        moves += [lambda images: images.flip(-2), lambda images: images.transpose(-1, -2)]

    def batch(train: torch.Tensor, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        rows = torch.randint(len(train), (batch_size,), generator=generator)
        x = train[rows.to(train.device)].long()
        if not moves:
            return x
        coins = (torch.rand(len(moves), batch_size, generator=generator) < 0.5).to(x.device)
        images = x.view(batch_size, *shape)
        for move, coin in zip(moves, coins):
            images = torch.where(coin[:, None, None, None], move(images), images)
        return images.reshape(batch_size, -1)

    return batch


def _read_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("source 'digits' needs scikit-learn: pip install scikit-learn "
                        "(or pip install 'anyorder[digits]')") from None
    images = load_digits().images.astype(np.uint8).reshape(-1, 64)   # 1797 x 8x8, levels 0..16
    n_test = round(0.1 * len(images))
    return images[:-n_test], images[-n_test:], (1, 8, 8), 17


def _read_files(source: str, path: str | Path | None):
    """(train uint8 [N, D], test uint8 [M, D], shape) from a folder, the cache or a download."""
    reader = {"mnist": _read_idx_pair, "fashion-mnist": _read_idx_pair,
              "cifar10": _read_cifar10, "imagenet32": _read_imagenet32}[source]
    if path is not None:
        root = Path(path).expanduser()
        if not root.is_dir():
            raise DataError(f"{source}: no folder {root}")
        return reader(root, source)
    root = cache_dir(source)
    try:
        return reader(root, source)
    except _Missing as missing:
        _download(source, root, missing)
    return reader(root, source)


def _download(source: str, root: Path, missing: _Missing) -> None:
    if source not in _DOWNLOADS:
        raise DataError(f"{missing}; ImageNet32 needs a login at image-net.org: unzip "
                        f"Imagenet32_train_npz.zip and Imagenet32_val_npz.zip into {root} "
                        f"or pass path=") from None
    root.mkdir(parents=True, exist_ok=True)
    for url in _DOWNLOADS[source]:
        target = root / url.rsplit("/", 1)[1]
        part = target.with_name(target.name + ".part")
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, \
                    open(part, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as err:
            part.unlink(missing_ok=True)
            raise DataError(f"{source} is not in {root} and downloading {url} failed "
                            f"({' '.join(str(err).split())}); put the standard files there "
                            f"or pass path=") from None
        part.rename(target)
        if target.name.endswith(".tar.gz"):
            with tarfile.open(target) as archive:
                archive.extractall(root, filter="data")
            target.unlink()


def _locate(root: Path, names: list[str], source: str) -> Path:
    """The first of `names` in `root` or one folder below it (archives unpack into one)."""
    folders = [root] + (sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else [])
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    raise _Missing(f"{source}: no {names[0]} in {root}")


def _pixels(array, what: str) -> np.ndarray:
    """Check that `array` holds 8-bit pixel values and return it as uint8."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind not in "iu":
        raise DataError(f"{what}: pixel values must be integers 0..255, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise DataError(f"{what}: pixel values out of range 0..255 "
                        f"(found {array.min()}..{array.max()})")
    return array.astype(np.uint8)


def _read_idx(file: Path) -> np.ndarray:
    """An idx3 uint8 image file -> [N, H, W]."""
    try:
        with (gzip.open if file.suffix == ".gz" else open)(file, "rb") as f:
            raw = bytearray(f.read())      # writable, so torch can share it
    except (OSError, EOFError) as err:
        raise DataError(f"cannot read {file}: {err}") from None
    if len(raw) < 16 or raw[:4] != b"\x00\x00\x08\x03":
        raise DataError(f"{file} is not an idx file of uint8 images (magic number "
                        f"{raw[:4].hex()}, expected 00000803)")
    dims = struct.unpack(">3I", raw[4:16])
    if len(raw) != 16 + int(np.prod(dims)):
        raise DataError(f"{file}: header says {dims[0]}x{dims[1]}x{dims[2]} pixels but the "
                        f"file holds {len(raw) - 16}")
    return np.frombuffer(raw, np.uint8, offset=16).reshape(dims)


def _read_idx_pair(root: Path, source: str):
    train, test = (_read_idx(_locate(root, [name + ".gz", name], source))
                   for name in _IDX_FILES.values())
    if train.shape[1:] != test.shape[1:]:
        raise DataError(f"{source}: training images are {train.shape[1]}x{train.shape[2]} "
                        f"but test images are {test.shape[1]}x{test.shape[2]}")
    return train.reshape(len(train), -1), test.reshape(len(test), -1), (1, *train.shape[1:])


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers only: a CIFAR batch needs nothing else,
    and a stray pickle cannot run code."""

    def find_class(self, module: str, name: str):
        numpy_part = module.split(".")[0] == "numpy" and name in {"_reconstruct", "ndarray", "dtype",
                                                                  "scalar"}
        if numpy_part or (module, name) == ("_codecs", "encode"):   # protocol-2 bytes use encode
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name}")


def _read_cifar_batch(file: Path) -> np.ndarray:
    try:
        with open(file, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as err:      # a corrupt pickle raises almost anything
        raise DataError(f"{file} is not a CIFAR-10 python batch ({type(err).__name__}: {err})") from None
    data = batch.get(b"data") if isinstance(batch, dict) else None
    if data is None or np.ndim(data) != 2 or np.shape(data)[1] != 3072:
        raise DataError(f"{file} is not a CIFAR-10 python batch (expected a dict with "
                        f"b'data' of shape [N, 3072])")
    return _pixels(data, str(file))


def _read_cifar10(root: Path, source: str):
    """Every data_batch_* that is there (a partial download trains on what it has) and test_batch."""
    folder = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    present = [name for name in _CIFAR_FILES[:-1] if (folder / name).is_file()]
    missing = [name for name in ("data_batch_*", _CIFAR_FILES[-1])
               if not (present if name == "data_batch_*" else (folder / name).is_file())]
    if missing:
        raise _Missing(f"{source}: {folder} is not a cifar-10-batches-py folder "
                       f"(missing {', '.join(missing)})")
    train = np.concatenate([_read_cifar_batch(folder / name) for name in present])
    return train, _read_cifar_batch(folder / _CIFAR_FILES[-1]), (3, 32, 32)


def _npz_data_shape(file: Path) -> tuple[int, ...]:
    """The shape of the "data" array in an npz file, read from its header only."""
    try:
        with zipfile.ZipFile(file) as archive, archive.open("data.npy") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            return read_header(f)[0]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f"{file} is not an ImageNet32 npz file with a 'data' array ({err})") from None


def _read_imagenet32(root: Path, source: str):
    files = [_locate(root, [name], source) for name in _IMAGENET32_FILES]
    shapes = [_npz_data_shape(file) for file in files]
    for file, shape in zip(files, shapes):
        if len(shape) != 2 or shape[1] != 3072:
            raise DataError(f"{file}: 'data' has shape {list(shape)}, expected [N, 3072]")
    # Filled in place: concatenating ten 390 MB arrays would need twice the memory.
    train = np.empty((sum(shape[0] for shape in shapes[:-1]), 3072), np.uint8)
    start = 0
    for file, shape in zip(files[:-1], shapes[:-1]):
        with np.load(file) as npz:
            train[start:start + shape[0]] = _pixels(npz["data"], str(file))
        start += shape[0]
    with np.load(files[-1]) as npz:
        test = _pixels(npz["data"], str(files[-1]))
    return train, test, (3, 32, 32)


class ImageIO(DataIO):
    """`anyorder sample` for images: inpaint test images or draw new ones; writes a PNG grid
    and the arrays into `--out` (created only once the samples exist)."""

    kind = "image"
    sample_options = (
        (("--inpaint",), {"metavar": "SHAPE|PNG", "help": "image models: centre, left-half, random-pixels, "
                                                          "random or a mask PNG (white = observed)"}),
        (("--per-channel",), {"action": "store_true", "help": "image models: masks differ per channel"}),
        (("--out",), {"help": "image models: folder for the PNG grid and arrays (default: samples)"}),
    )

    def check_sample_args(self, args):
        args.out = output_folder(args.out or "samples", "--out")

    def sample_queries(self, args, meta, rows, generator):
        from anyorder.pictures import MASK_KINDS, image_masks, mask_from_png
        shape = tuple(meta["shape"])
        if not args.inpaint:
            x = torch.zeros(args.num, meta["dim"], dtype=torch.long)
            return x, torch.zeros_like(x, dtype=torch.bool)
        x = rows()
        if args.inpaint not in MASK_KINDS and (Path(args.inpaint).suffix.lower() == ".png" or Path(args.inpaint).is_file()):
            return x, mask_from_png(args.inpaint, shape).expand(len(x), -1)
        return x, image_masks(len(x), shape, args.inpaint, aligned=not args.per_channel, generator=generator)

    def show_samples(self, args, meta, x, observed, filled):
        from anyorder.pictures import save_grid
        shape, levels, out = tuple(meta["shape"]), meta["num_classes"], args.out
        out.mkdir(parents=True, exist_ok=True)
        if args.inpaint:
            save_grid(out / "inpaint.png", [x, x, filled], shape, levels, masks=[None, observed, None])
            np.savez(out / "inpaint.npz", original=x.numpy(), observed=observed.numpy(), filled=filled.numpy())
            print(f"wrote {out / 'inpaint.png'} (rows: original / masked / filled) and {out / 'inpaint.npz'}")
        else:
            save_grid(out / "samples.png", [filled], shape, levels)
            np.save(out / "samples.npy", filled.numpy())
            print(f"wrote {out / 'samples.png'} and {out / 'samples.npy'}")
