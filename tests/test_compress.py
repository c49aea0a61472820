"""Lossless compression: bit-exact round trips, code lengths against the model's exact
likelihood, and one-line errors for foreign, damaged and unusable files."""

import io
import math
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anyorder import budget, checkpoint
from anyorder.cli import main
from anyorder.compress import (PRECISION, CompressionError, compress, compress_file, decompress,
                               decompress_file, fixed_point, model_fingerprint, path_conditionals,
                               read_content, uniform_policy)
from anyorder.data import load_data
from anyorder.data.text import VOCAB
from conftest import BYTE_D, BYTES_META, byte_model_of, random_model

pytest.importorskip("constriction")

TEXT_META = {"kind": "text", "dim": 16, "num_classes": 27, "source": "shakespeare", "vocab": VOCAB, "seq_len": 16}
GREY_META = {"kind": "image", "dim": 16, "num_classes": 17, "source": "digits", "shape": [1, 4, 4], "levels": 17}
RGB_META = {"kind": "image", "dim": 12, "num_classes": 256, "source": "cifar10", "shape": [3, 2, 2], "levels": 256}


def _model(meta, overrides, seed=0, scale=0.3):
    return random_model("text-cpu" if meta["kind"] == "text" else "digits-cpu", meta, overrides, seed, scale)


TINY_TEXT = ["data.seq_len=16", "net.width=32", "net.depth=1", "net.heads=2"]
TINY_UNET = ["net.channels=8", "net.channel_mult=[1]", "net.attention_resolutions=[]"]


D = BYTE_D
TEXT8_META = dict(TEXT_META, dim=D, seq_len=D)


@pytest.fixture(scope="module")
def text_model():
    return _model(TEXT_META, TINY_TEXT)


@pytest.fixture(scope="module")
def grey_model():
    return _model(GREY_META, TINY_UNET)


def _round_trip(tmp_path, bundle, data: bytes, suffix=".txt", threads=1, **options):
    """(decoded bytes, sizes, compressed path) of `data` through compress_file and decompress_file."""
    source, packed, back = tmp_path / f"in{suffix}", tmp_path / "packed.aoz", tmp_path / f"out{suffix}"
    source.write_bytes(data)
    sizes = compress_file(*bundle, source, packed, threads=threads, **options)
    decompress_file(*bundle, packed, back)
    return back.read_bytes(), sizes, packed


def _shakespeare_test_text(chars):
    rows = load_data({"kind": "text", "source": "shakespeare", "seq_len": 64}).split("test")
    return "".join(VOCAB[i] for i in rows.reshape(-1)[:chars].tolist()).encode()


@pytest.mark.parametrize("text", [b"", b"a", b" ", b"to be or not to", b"to be or not to ",
                                  b"to be or not to be"])
def test_short_texts_round_trip(tmp_path, text_model, text):
    back, sizes, packed = _round_trip(tmp_path, text_model, text)
    assert back == text and sizes["variables"] == len(text)


def test_shakespeare_and_random_text_round_trip(tmp_path, text_model):
    shakespeare = _shakespeare_test_text(16 * 37 + 5)
    back, _, _ = _round_trip(tmp_path, text_model, shakespeare, batch_size=8)
    assert back == shakespeare
    rng = np.random.default_rng(0)
    random_text = np.frombuffer(VOCAB.encode(), np.uint8)[rng.integers(0, 27, 16 * 9 + 11)].tobytes()
    back, _, _ = _round_trip(tmp_path, text_model, random_text, batch_size=4)
    assert back == random_text


def test_code_length_is_the_exact_likelihood(tmp_path, text_model):
    """The range coder's payload costs −log2 p(x) of the model's exact path (full rows by the
    joint, the partial last row by the marginal on its first r positions) plus flush bits."""
    model, _, _ = text_model
    text = _shakespeare_test_text(16 * 20 + 9)
    _, sizes, packed = _round_trip(tmp_path, text_model, text, precision="fp32")
    ids = torch.tensor([VOCAB.index(c) for c in text.decode()])
    rows = torch.cat([ids, torch.zeros(16 - 9, dtype=torch.long)]).view(21, 16)
    seen = torch.arange(16) < torch.tensor([16] * 20 + [9]).unsqueeze(-1)
    with torch.no_grad():
        ideal = -model.log_prob(rows, seen).sum().item() / math.log(2)
    # fixed part; varints threads, batch (128: 2 bytes), precision, policy, length; chunk length; CRCs
    assert sizes["header_bytes"] == 3 + 1 + 8 + 4 + 1 + 1 + 2 + 1 + 1 + 2 + 1 + 8
    payload_bits = 8 * (sizes["bytes_out"] - sizes["header_bytes"])
    assert ideal - 1 <= payload_bits <= ideal + 64


@pytest.mark.parametrize("protocol", ["natural", "strided(4)"])
def test_path_conditionals_walk_the_exact_likelihood_path(protocol):
    model, _, _ = _model(TEXT_META, TINY_TEXT + [f"model.protocol={protocol}"])
    x = torch.randint(27, (5, 16), generator=torch.Generator().manual_seed(1))
    target = torch.rand(5, 16, generator=torch.Generator().manual_seed(2)) < 0.6
    target[:, 0] = True
    total = torch.zeros(5)
    visited = torch.zeros_like(target)
    for rows, var, params in path_conditionals(model, x, target):
        assert not visited[rows, var].any()
        visited[rows, var] = True
        total.index_add_(0, rows, torch.log_softmax(params, -1).gather(-1, x[rows, var, None]).squeeze(-1))
    assert torch.equal(visited, target)
    with torch.no_grad():
        assert torch.allclose(total, model.log_prob(x, target), atol=1e-4)


def test_strided_protocol_round_trip(tmp_path):
    bundle = _model(TEXT_META, TINY_TEXT + ["model.protocol=strided(4)"])
    text = _shakespeare_test_text(16 * 4 + 6)
    assert _round_trip(tmp_path, bundle, text)[0] == text
    random_order = _model(TEXT_META, TINY_TEXT + ["model.protocol=random"])
    with pytest.raises(CompressionError, match="deterministic protocol"):
        _round_trip(tmp_path, random_order, text)


def test_step_policy_codes_the_k_step_likelihood(tmp_path, text_model):
    """With K steps every variable of step k is coded from the node of the steps before it:
    the code length is the K-step likelihood, checked against a variable-by-variable sum."""
    model, _, _ = text_model
    assert uniform_policy(16, 3) == [0, 5, 11, 16] and uniform_policy(16, 40) == list(range(17))
    text = _shakespeare_test_text(16 * 6 + 7)
    back, sizes, packed = _round_trip(tmp_path, text_model, text, steps=3, precision="fp32")
    assert back == text
    ids = torch.tensor([VOCAB.index(c) for c in text.decode()])
    rows = torch.cat([ids, torch.zeros(16 - 7, dtype=torch.long)]).view(7, 16)
    length = torch.tensor([16] * 6 + [7])
    bounds = budget.row_boundaries(torch.tensor([0, 5, 11, 16]), length)   # the short row: rescaled
    assert bounds[-1].tolist() == [0, 2, 5, 7]
    ideal = 0.0
    with torch.no_grad():
        for k in range(3):
            low, high = bounds[:, k, None], bounds[:, k + 1, None]
            node = torch.arange(16) < low
            logp = torch.log_softmax(model(rows, node), -1).gather(-1, rows.unsqueeze(-1)).squeeze(-1)
            for j in range(16):
                step = ((low <= j) & (j < high)).squeeze(-1)
                ideal -= logp[step, j].sum().item() / math.log(2)
    payload_bits = 8 * (sizes["bytes_out"] - sizes["header_bytes"])
    assert ideal - 1 <= payload_bits <= ideal + 64
    with pytest.raises(CompressionError, match="step policy"):
        compress(model, b"\0" * 8, read_content(tmp_path / "in.txt", TEXT_META), io.BytesIO(), policy=[0, 8, 12])


def test_fixed_point_frequencies():
    logits = torch.randn(50, 27, generator=torch.Generator().manual_seed(0)) * 6
    logits[0] = torch.tensor([-200.0] * 26 + [0.0])        # near-certain: every value still codable
    freq = fixed_point(logits)
    assert freq.dtype == np.float64 and (freq == np.round(freq)).all()
    assert (freq >= 1).all() and (freq.sum(-1) == 2 ** PRECISION).all()
    probs = torch.softmax(logits.double(), -1).numpy()
    assert np.abs(freq / 2 ** PRECISION - probs).max() <= 27 / 2 ** PRECISION


def test_images_round_trip_npy_and_png(tmp_path, grey_model):
    rng = np.random.default_rng(0)
    for array in (rng.integers(0, 17, (7, 4, 4)).astype(np.uint8),
                  rng.integers(0, 17, (3, 16)).astype(np.int64),
                  rng.integers(0, 17, (2, 1, 4, 4)).astype(np.int16),
                  np.zeros((0, 4, 4), np.uint8)):
        source, packed, back = tmp_path / "in.npy", tmp_path / "in.aoz", tmp_path / "out.npy"
        np.save(source, array)
        compress_file(*grey_model, source, packed, batch_size=5, threads=1)
        decompress_file(*grey_model, packed, back)
        restored = np.load(back)
        assert restored.dtype == array.dtype and restored.shape == array.shape
        assert np.array_equal(restored, array) and back.read_bytes() == source.read_bytes()
    source = tmp_path / "steps-in.npy"
    np.save(source, rng.integers(0, 17, (6, 4, 4)).astype(np.uint8))
    compress_file(*grey_model, source, tmp_path / "steps.aoz", steps=4, threads=1)
    decompress_file(*grey_model, tmp_path / "steps.aoz", tmp_path / "steps.npy")
    assert tmp_path.joinpath("steps.npy").read_bytes() == source.read_bytes()
    levels = rng.integers(0, 17, (4, 4))
    picture = np.round(levels * 255 / 16).astype(np.uint8)
    Image.fromarray(picture).save(tmp_path / "digit.png")
    compress_file(*grey_model, tmp_path / "digit.png", tmp_path / "digit.aoz", threads=1)
    decompress_file(*grey_model, tmp_path / "digit.aoz", tmp_path / "back.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "back.png")), picture)


def test_rgb_png_round_trip(tmp_path):
    bundle = _model(RGB_META, TINY_UNET, scale=0.1)
    picture = np.random.default_rng(3).integers(0, 256, (2, 2, 3)).astype(np.uint8)
    Image.fromarray(picture).save(tmp_path / "in.png")
    compress_file(*bundle, tmp_path / "in.png", tmp_path / "in.aoz", threads=1)
    decompress_file(*bundle, tmp_path / "in.aoz", tmp_path / "out.png")
    back = Image.open(tmp_path / "out.png")
    assert back.mode == "RGB" and np.array_equal(np.asarray(back), picture)


def test_decoding_repeats_the_recorded_batches_and_threads(tmp_path, grey_model):
    """The U-Net's outputs move in their last bits with the batch size; decoding must use the
    batches and thread count in the header, whatever the caller's settings are."""
    model, config, meta = grey_model
    np.save(tmp_path / "x.npy", np.random.default_rng(0).integers(0, 17, (11, 4, 4)).astype(np.uint8))
    content = read_content(tmp_path / "x.npy", meta)
    fingerprint = model_fingerprint(model, config, meta)
    blob = io.BytesIO()
    compress(model, fingerprint, content, blob, batch_size=3, threads=1)
    torch.set_num_threads(2)
    decoded = io.BytesIO()
    blob.seek(0)
    assert decompress(model, fingerprint, blob, meta, decoded) == 11 * 16
    assert decoded.getvalue() == (tmp_path / "x.npy").read_bytes() and torch.get_num_threads() == 2


def test_a_different_model_is_refused(tmp_path, text_model):
    _, _, packed = _round_trip(tmp_path, text_model, b"hello world")
    other = _model(TEXT_META, TINY_TEXT, seed=1)
    with pytest.raises(CompressionError, match="different model"):
        decompress_file(*other, packed, tmp_path / "never.txt")
    assert not (tmp_path / "never.txt").exists()


def test_damaged_files_give_one_line_errors(tmp_path, text_model):
    _, _, packed = _round_trip(tmp_path, text_model, _shakespeare_test_text(100))
    blob = packed.read_bytes()
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x10
    cases = {"corrupted or truncated": [bytes(flipped), blob[:-1], blob[:len(blob) // 2], blob + b"\0"],
             "truncated": [blob[:10], b"AO"],
             "not a file written by anyorder compress": [b"", b"hello world", b"PK\x03\x04"]}
    forged = bytearray(blob[:-4])
    forged[16] = 0xFF                        # device and content kinds, under a valid checksum
    cases["damaged header"] = [bytes(forged) + zlib.crc32(forged).to_bytes(4, "little")]
    for message, blobs in cases.items():
        for damaged in blobs:
            path = tmp_path / "damaged.aoz"
            path.write_bytes(damaged)
            with pytest.raises(CompressionError, match=message) as err:
                decompress_file(*text_model, path, tmp_path / "never.txt")
            assert "\n" not in str(err.value)
    assert not (tmp_path / "never.txt").exists()


def test_other_probabilities_at_decode_fail_the_checksum(tmp_path, text_model, monkeypatch):
    """Another machine whose network differs in the last bits must not yield silent garbage."""
    _, _, packed = _round_trip(tmp_path, text_model, _shakespeare_test_text(200))
    import anyorder.compress as module
    monkeypatch.setattr(module, "fixed_point", lambda logits: fixed_point(logits * 1.05))
    with pytest.raises(CompressionError, match="fails its checksum|cannot be decoded"):
        decompress_file(*text_model, packed, tmp_path / "never.txt")


def test_unusable_inputs_are_refused(tmp_path, text_model, grey_model):
    (tmp_path / "upper.txt").write_bytes(b"to be\nor not")
    with pytest.raises(CompressionError, match=r"b'\\n' at position 5 \(line 1\)"):
        compress_file(*text_model, tmp_path / "upper.txt", tmp_path / "x.aoz")
    np.save(tmp_path / "big.npy", np.full((2, 4, 4), 17, np.uint8))
    with pytest.raises(CompressionError, match="0..16"):
        compress_file(*grey_model, tmp_path / "big.npy", tmp_path / "x.aoz")
    np.save(tmp_path / "wide.npy", np.zeros((2, 4, 5), np.uint8))
    with pytest.raises(CompressionError, match="image shape"):
        compress_file(*grey_model, tmp_path / "wide.npy", tmp_path / "x.aoz")
    Image.fromarray(np.full((4, 4), 7, np.uint8)).save(tmp_path / "off-grid.png")
    with pytest.raises(CompressionError, match="pixel value 7 at row 0, column 0"):
        compress_file(*grey_model, tmp_path / "off-grid.png", tmp_path / "x.aoz")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(CompressionError, match="mode L"):
        compress_file(*grey_model, tmp_path / "rgb.png", tmp_path / "x.aoz")
    for source, what in ((tmp_path / "absent.txt", "does not exist"), (tmp_path, "is a folder"),
                         (Path(os.devnull), "is not a regular file")):
        with pytest.raises(CompressionError, match=what):
            compress_file(*text_model, source, tmp_path / "x.aoz")
    assert not (tmp_path / "x.aoz").exists()


def test_missing_coder_is_named(tmp_path, text_model, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "constriction", None)
    (tmp_path / "a.txt").write_bytes(b"abc")
    with pytest.raises(CompressionError, match=r"pip install 'anyorder\[compress\]'"):
        compress_file(*text_model, tmp_path / "a.txt", tmp_path / "a.aoz")


def test_cli_round_trip_and_errors(tmp_path, text_model, capsys):
    model, config, meta = text_model
    checkpoint.save(tmp_path / "run", model.state_dict(), config, meta, step=0)
    text = _shakespeare_test_text(16 * 3 + 2)
    (tmp_path / "a.txt").write_bytes(text)
    assert main(["compress", str(tmp_path / "run"), str(tmp_path / "a.txt"), str(tmp_path / "a.aoz"),
                 "--quiet", "--threads", "1", "--batch-size", "2"]) == 0
    assert "bits per character" in capsys.readouterr().out
    (tmp_path / "empty.txt").write_bytes(b"")      # no rate to print (it printed 8 x the header's bytes per 0)
    assert main(["compress", str(tmp_path / "run"), str(tmp_path / "empty.txt"), str(tmp_path / "e.aoz"), "--quiet"]) == 0
    assert "bits per" not in capsys.readouterr().out
    assert main(["decompress", str(tmp_path / "run"), str(tmp_path / "a.aoz"), str(tmp_path / "b.txt"),
                 "--quiet"]) == 0
    assert (tmp_path / "b.txt").read_bytes() == text
    (tmp_path / "a.aoz").write_bytes((tmp_path / "a.aoz").read_bytes()[:-3])
    capsys.readouterr()
    assert main(["decompress", str(tmp_path / "run"), str(tmp_path / "a.aoz"), str(tmp_path / "c.txt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("anyorder: error:") and "truncated" in err and err.count("\n") == 1


# ---------------------------------------------------------------- byte models: any file
UTF8 = "Ünïcödé: ∑ ≈ 東京 😀 — «quotes»\n".encode()


@pytest.mark.parametrize("data", [bytes(range(256)), bytes(range(255, -1, -1)) * 3 + b"\x00", UTF8, b"",
                                  b"x", b"abcdefgh" * 5 + b"abc"], ids=["all-256", "reversed", "utf8", "empty",
                                                                        "one", "not-a-multiple-of-D"])
def test_any_file_round_trips_byte_identical(tmp_path, byte_model, data):
    back, sizes, _ = _round_trip(tmp_path, byte_model, suffix=".bin", data= data)
    assert back == data and sizes["variables"] == len(data) and sizes["bytes_in"] == len(data)


def test_multi_chunk_streaming_and_its_code_length(tmp_path, byte_model):
    """Batches of one row are chunks of D bytes each: still byte-identical, and the payload
    is the exact likelihood (full rows: the joint; the partial last row: the marginal on its
    first r positions) plus at most 2 flushed words per chunk."""
    model = byte_model[0]
    data = bytes(np.random.default_rng(0).integers(0, 256, 5 * D + 3, dtype=np.uint8))
    back, sizes, packed = _round_trip(tmp_path, byte_model, suffix=".bin", data=data, batch_size=1,
                                      precision="fp32")
    assert back == data
    rows = torch.zeros(6, D, dtype=torch.long)
    rows.view(-1)[:len(data)] = torch.tensor(list(data))
    seen = torch.arange(D) < torch.tensor([D] * 5 + [3]).unsqueeze(-1)
    with torch.no_grad():
        ideal = -model.log_prob(rows, seen).sum().item() / math.log(2)
    payload = 8 * (sizes["bytes_out"] - sizes["header_bytes"])
    assert ideal - 1 <= payload <= ideal + 6 * 64
    whole = _round_trip(tmp_path, byte_model, suffix=".bin", data=data, batch_size=64, precision="fp32")[1]
    assert whole["bytes_out"] < sizes["bytes_out"]            # one chunk instead of six


def test_path_network_byte_model_round_trip_or_clear_refusal(tmp_path, path_model, capsys):
    """Path networks code through the model's walk once it offers one; until then, compress
    says so before any work (no progress bar) and writes nothing."""
    try:
        back, _, _ = _round_trip(tmp_path, path_model, suffix=".bin", data=UTF8, progress=True)
    except CompressionError as err:
        assert "node network" in str(err) and not (tmp_path / "in.aoz").exists()
        assert "compress" not in capsys.readouterr().err
    else:
        assert back == UTF8


def test_vocabulary_checks_come_before_any_work(tmp_path, byte_model, capsys):
    text8 = byte_model_of(TEXT8_META)
    (tmp_path / "a.txt").write_bytes(b"to be or not to be" * 100 + b"\nthat")
    with pytest.raises(CompressionError, match=r"b'\\n' at position 1800 \(line 1\) is outside .*data.vocabulary=bytes"):
        compress_file(*text8, tmp_path / "a.txt", tmp_path / "a.aoz", progress=True)
    assert "compress" not in capsys.readouterr().err and not (tmp_path / "a.aoz").exists()
    (tmp_path / "b.txt").write_bytes(b"to be or not to be")
    compress_file(*text8, tmp_path / "b.txt", tmp_path / "b.aoz")
    with pytest.raises(CompressionError, match="holds text8 text .* this checkpoint codes bytes"):
        decompress_file(*byte_model, tmp_path / "b.aoz", tmp_path / "never")
    compress_file(*byte_model, tmp_path / "b.txt", tmp_path / "c.aoz")
    with pytest.raises(CompressionError, match="holds bytes .* this checkpoint codes text8 text"):
        decompress_file(*text8, tmp_path / "c.aoz", tmp_path / "never")
    with pytest.raises(CompressionError, match="different model"):
        decompress_file(*byte_model_of(BYTES_META, seed=1), tmp_path / "c.aoz", tmp_path / "never")
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("version", [1, 2, 3])
def test_older_format_versions_are_refused_with_a_message(tmp_path, byte_model, version):
    packed = tmp_path / "old.aoz"
    _, _, made = _round_trip(tmp_path, byte_model, suffix=".bin", data=b"hello")
    blob = bytearray(made.read_bytes())
    blob[3] = version
    packed.write_bytes(bytes(blob))
    with pytest.raises(CompressionError, match=f"format version {version} .* decompress it with the anyorder that wrote it"):
        decompress_file(*byte_model, packed, tmp_path / "never")


def test_outputs_go_through_the_shared_atomic_writer(tmp_path, byte_model, monkeypatch):
    """compress and decompress write through `files.write_atomic`: the temporary file of a killed
    compress (its pid gone, its lock free) is cleared by the next one, and a failing run leaves
    no output and no temporary file."""
    import subprocess
    import sys

    from anyorder import files
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    killed = files.temporary(tmp_path / "packed.aoz", dead)
    killed.write_bytes(b"AOZ half a file")
    back, _, _ = _round_trip(tmp_path, byte_model, b"stale no more", suffix=".bin")
    assert back == b"stale no more" and not killed.exists()
    import anyorder.compress as module

    def failing(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "decompress", failing)
    with pytest.raises(CompressionError, match="cannot write .*never.bin: No space left on device"):
        decompress_file(*byte_model, tmp_path / "packed.aoz", tmp_path / "never.bin")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.bin", "out.bin", "packed.aoz"]


def test_compress_reads_a_file_block_by_block(tmp_path, byte_model, monkeypatch):
    """No read of the input is larger than a batch of rows: memory does not grow with the file."""
    import anyorder.content as content
    reads = []
    real_open = Path.open

    class Counting:
        def __init__(self, f):
            self.f = f

        def read(self, size=-1):
            reads.append(size)
            return self.f.read(size)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def counting_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return Counting(f) if mode == "rb" and path.name == "in.bin" else f

    monkeypatch.setattr(Path, "open", counting_open)
    data = bytes(np.random.default_rng(1).integers(0, 256, 40 * D + 5, dtype=np.uint8))
    back, _, _ = _round_trip(tmp_path, byte_model, suffix=".bin", data= data, batch_size=4)
    assert back == data and reads and 0 <= max(reads) <= 4 * D and content.READ_BLOCK > 4 * D


@pytest.mark.parametrize("net", ["transformer", "path-transformer"])
def test_bf16_coding_round_trips_and_is_recorded(tmp_path, net):
    """In bf16 (what "auto" picks where it is native) a file still decodes byte-identical, the
    header names the precision (decoding follows it), and the
    code stays within 1% of the fp32 code: bf16 keeps 8 significant bits, so a logit moves by
    about 2^-8 of its size and a code length by a like fraction."""
    from anyorder.compress import _Header
    bundle = byte_model_of(net=net)
    data = bytes(range(256)) + UTF8 * 8
    back, sizes, packed = _round_trip(tmp_path, bundle, data, suffix=".bin", precision="bf16")
    assert back == data
    with packed.open("rb") as f:
        assert _Header.read(f, "packed").precision == "bf16"
    fp32 = _round_trip(tmp_path, bundle, data, suffix=".bin", precision="fp32")[1]
    assert abs(sizes["bytes_out"] - fp32["bytes_out"]) <= 0.01 * fp32["bytes_out"]
    with pytest.raises(CompressionError, match="precision must be"):
        compress_file(*bundle, tmp_path / "in.bin", tmp_path / "x.aoz", precision="fp16")
