import shutil
import urllib.error
import zipfile

import numpy as np
import pytest
import torch

from anyorder.data import text
from anyorder.data.base import DataError
from anyorder.data.text import VOCAB, clean_text, decode, encode, load_text
from anyorder.errors import UserError
from anyorder.infill import prompt_holes

EMBEDDED_PLAYS = ["hamlet", "julius_caesar", "lear", "macbeth", "midsummer_nights_dream",
                  "othello", "romeo_and_juliet", "tempest", "twelfth_night"]


def make_stream(n: int, seed: int = 0) -> str:
    """n characters of clean text (single spaces, none at the ends): random words."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 27, (2 * n,), generator=g)
    ids[torch.rand(2 * n, generator=g) < 0.18] = 0
    return clean_text(decode(ids))[: n - 1] + "a"


def test_encode_decode_round_trip():
    s = "the quick brown fox jumps over the lazy dog"
    ids = encode(s)
    assert ids.dtype == torch.int64 and ids.shape == (len(s),)
    assert ids[:4].tolist() == [20, 8, 5, 0]
    assert decode(ids) == s
    assert decode(torch.stack([ids, ids.flip(0)])) == [s, s[::-1]]
    with pytest.raises(DataError, match="clean"):
        encode("Hello")
    with pytest.raises(DataError, match="clean"):
        encode("caf\u00e9")


def test_clean_text_text8_convention():
    raw = "Hello, World!\tIt's 2 o'clock -- ROMEO\nand JULIET (10x).  Na\u00efve?\n"
    assert clean_text(raw) == "hello world it s two o clock romeo and juliet one zero x na ve"
    assert clean_text("... !!! ---") == ""
    assert clean_text(clean_text(raw)) == clean_text(raw)


def check_split_layout(data, stream: str, seq_len: int, fractions):
    n = len(stream)
    train_end, valid_end = round(fractions[0] * n), round((fractions[0] + fractions[1]) * n)
    assert data.kind == "text" and data.dim == seq_len and data.num_classes == 27
    assert decode(data.train) == stream[:train_end]
    for name, start, end in [("valid", train_end, valid_end), ("test", valid_end, n)]:
        chunks = data.split(name)
        count = (end - start) // seq_len
        assert chunks.shape == (count, seq_len) and chunks.dtype == torch.int64
        assert decode(chunks.flatten()) == stream[start:start + count * seq_len]


def test_file_splits_deterministic_and_disjoint(tmp_path):
    stream = make_stream(5000)
    (tmp_path / "t.txt").write_text(stream)
    fractions = (0.8, 0.1, 0.1)
    a = load_text("file", tmp_path / "t.txt", seq_len=64, split_fractions=fractions)
    b = load_text(str(tmp_path / "t.txt"), seq_len=64, split_fractions=fractions)
    check_split_layout(a, stream, 64, fractions)
    for name in ("valid", "test"):
        assert torch.equal(a.split(name), b.split(name))
    assert a.meta == {"source": "file", "vocab": VOCAB, "seq_len": 64}


def test_crops_are_substrings_and_reproducible(tmp_path):
    (tmp_path / "t.txt").write_text(make_stream(3000))
    data = load_text("file", tmp_path / "t.txt", seq_len=40, train_crop=1000)
    assert len(data.train) == 1000
    train = decode(data.train)
    batch = data.train_batch(64, torch.Generator().manual_seed(1))
    assert batch.shape == (64, 40) and batch.dtype == torch.int64
    assert all(crop in train for crop in decode(batch))
    assert torch.equal(batch, data.train_batch(64, torch.Generator().manual_seed(1)))
    assert not torch.equal(batch, data.train_batch(64, torch.Generator().manual_seed(2)))
    crops = set(decode(data.train_batch(10_000, torch.Generator().manual_seed(3))))
    assert train[:40] in crops and train[-40:] in crops     # both ends of the stream are reachable


def test_folder_of_txt_files(tmp_path):
    (tmp_path / "b.txt").write_text("Second FILE, " * 40)
    (tmp_path / "a.txt").write_text("First file! " * 40)
    (tmp_path / "ignored.md").write_text("not text")
    data = load_text(tmp_path, seq_len=16, split_fractions=(0.5, 0.5, 0))
    stream = clean_text("First file! " * 40 + "\n" + "Second FILE, " * 40)
    assert set(data.splits) == {"valid"}
    check = decode(data.train) + decode(data.split("valid").flatten())
    assert stream.startswith(check) and len(stream) - len(check) < 16


def test_clear_errors(tmp_path):
    with pytest.raises(DataError, match="no such text file or folder"):
        load_text("file", tmp_path / "missing.txt")
    with pytest.raises(DataError, match="no such text8 file"):
        load_text("text8", tmp_path / "missing.zip")
    with pytest.raises(DataError, match="no \\*.txt files"):
        load_text("file", tmp_path)
    (tmp_path / "punct.txt").write_text("!!! ... ---\n??\n")
    with pytest.raises(DataError, match="no letters"):
        load_text("file", tmp_path / "punct.txt")
    (tmp_path / "short.txt").write_text(make_stream(1000))
    with pytest.raises(DataError, match="valid split has 50 characters, fewer than seq_len=60"):
        load_text("file", tmp_path / "short.txt", seq_len=60)
    with pytest.raises(DataError, match="split_fractions"):
        load_text("file", tmp_path / "short.txt", split_fractions=(0.5, 0.2))
    (tmp_path / "bad.zip").write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="not a readable zip"):
        load_text("text8", tmp_path / "bad.zip")
    with pytest.raises(DataError, match="unknown text source"):
        load_text("shakespear", tmp_path / "short.txt")
    with pytest.raises(DataError, match="seq_len must be a positive integer"):
        load_text(seq_len=0)


def write_text8_zip(path, stream: str):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("text8", stream)


def test_text8_zip_standard_split(tmp_path):
    stream = " " + make_stream(1999)            # text8 starts with a space; kept as is
    write_text8_zip(tmp_path / "text8.zip", stream)
    data = load_text("text8", tmp_path / "text8.zip", seq_len=30)
    check_split_layout(data, stream, 30, (0.9, 0.05, 0.05))   # 1800 / 100 / 100
    assert len(data.train) == 1800 and data.split("valid").shape == (3, 30)
    (tmp_path / "text8").write_text(stream)
    extracted = load_text("text8", tmp_path / "text8", seq_len=30)
    assert torch.equal(extracted.train, data.train)
    assert data.meta["source"] == "text8"


def test_text8_from_cache_or_clear_download_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ANYORDER_CACHE", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(text.urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match=f"text8.zip is not in {tmp_path}.*put text8.zip there") as err:
        load_text("text8")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "text8.zip.part").exists()
    write_text8_zip(tmp_path / "text8.zip", make_stream(2000))
    assert len(load_text("text8", seq_len=20).train) == 1800


def test_embedded_shakespeare():
    data = load_text()
    assert data.meta == {"source": "shakespeare", "vocab": VOCAB, "seq_len": 250}
    assert 900_000 < len(data.train) and int(data.train.max()) < 27
    assert data.split("valid").shape[1] == 250 and len(data.split("test")) > 100
    corpus = (text.resources.files("anyorder.data") / "corpus" / "shakespeare.txt").read_text()
    assert set(corpus) <= set(VOCAB) and "to be or not to be" in corpus


def test_embedded_corpus_is_the_cleaned_plays(shared_data, tmp_path):
    plays = shared_data / "text" / "shakespeare"
    for play in EMBEDDED_PLAYS:
        shutil.copy(plays / f"{play}_gut.txt", tmp_path / f"{play}_gut.txt")
    assert torch.equal(load_text("file", tmp_path).train, load_text("shakespeare").train)


def test_binary_files_are_refused_and_prompts_cleaned(tmp_path):
    noise = tmp_path / "noise.bin"
    noise.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8)))
    with pytest.raises(DataError, match="noise.bin looks like a binary file"):
        load_text("file", noise, seq_len=8)
    cleaned, holes = prompt_holes(b"To BE, or 2_!", text.vocabulary_of({"vocab": VOCAB}))
    assert cleaned == b"to be or two  " and holes.tolist() == [False] * 13 + [True]


def test_text_functions_refuse_other_types_in_one_line():
    for call, message in ((lambda: encode(5), "encode takes str, got int"),
                          (lambda: clean_text(b"abc"), "clean_text takes str"),
                          (lambda: decode(torch.tensor([1.5])), "ids must be integers")):
        with pytest.raises(UserError, match=message):
            call()
