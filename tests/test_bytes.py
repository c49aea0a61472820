"""Byte models: the byte vocabulary of files and folders, likelihoods that sum to one,
compression of any file (streamed in chunks) and infilling that gives the prompt back."""

import itertools
import math
from pathlib import Path

import pytest
import torch

from anyorder import checkpoint
from anyorder.cli import main
from anyorder.data import text
from anyorder.data.base import DataError
from anyorder.data.text import VOCAB, clean_text, load_text, shakespeare_plays, vocabulary_of
from anyorder.errors import UserError
from anyorder.infill import fill_windows, infill, parse_spans, prompt_holes
from conftest import BYTE_D, BYTES_META, byte_model_of

D = BYTE_D
TEXT8_META = {"kind": "text", "dim": D, "num_classes": 27, "source": "file", "vocab": VOCAB, "seq_len": D}


# ---------------------------------------------------------------- data
def test_a_file_is_its_bytes_and_training_says_so(tmp_path):
    raw = bytes(range(256)) * 4 + "héllo, Wörld!\n\t∑ 2 €\r\n".encode()
    (tmp_path / "any.bin").write_bytes(raw)
    data = load_text(tmp_path / "any.bin", seq_len=D, vocabulary="bytes", split_fractions=(0.8, 0.1, 0.1))
    assert data.num_classes == 256 and data.meta == {"source": "file", "vocabulary": "bytes", "seq_len": D}
    end = round(0.8 * len(raw))
    assert bytes(data.train.numpy()) == raw[:end]
    assert "raw bytes" in data.note and "nothing cleaned" in data.note
    text8 = load_text("shakespeare", seq_len=D)
    assert "text8's cleaning" in text8.note and "data.vocabulary=bytes" in text8.note


def test_shipped_plays_raw_and_cleaned_agree():
    raw = shakespeare_plays()
    data = load_text("shakespeare", seq_len=256, vocabulary="bytes")
    assert bytes(data.train[:1000].numpy()) == raw[:1000] and b"HAMLET, PRINCE OF DENMARK\n" in raw
    corpus = (text.resources.files("anyorder.data") / "corpus" / "shakespeare.txt").read_text()
    assert clean_text(raw.decode()) == corpus               # the text8 corpus is these plays, cleaned
    assert vocabulary_of(data.meta).name == "bytes" and vocabulary_of({"vocab": VOCAB}).name == "text8"


def test_folders_recursively_hidden_skipped_and_errors(tmp_path, monkeypatch):
    (tmp_path / "src" / "deep").mkdir(parents=True)
    (tmp_path / "src" / "b.py").write_bytes(b"print('b')\n")
    (tmp_path / "src" / "deep" / "a.c").write_bytes(b"int a;\n")
    (tmp_path / "src" / "z.txt").write_bytes(b"zz" * 20)
    (tmp_path / "src" / ".git").mkdir()
    (tmp_path / "src" / ".git" / "HEAD").write_bytes(b"ref: never read\n")
    data = load_text(tmp_path / "src", seq_len=4, vocabulary="bytes", split_fractions=(1, 0, 0))
    assert bytes(data.train.numpy()) == b"print('b')\n" + b"\n" + b"int a;\n" + b"\n" + b"zz" * 20
    text8 = load_text(tmp_path / "src", seq_len=4, split_fractions=(1, 0, 0))    # text8: *.txt only
    assert "".join(VOCAB[i] for i in text8.train.tolist()) == "zz" * 20
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    with pytest.raises(DataError, match="no files in folder .*empty"):
        load_text(tmp_path / "empty", vocabulary="bytes")
    real = Path.read_bytes

    def unreadable(path):
        if path.name == "b.py":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    with pytest.raises(DataError, match=r"cannot read .*b\.py: Permission denied"):
        load_text(tmp_path / "src", seq_len=4, vocabulary="bytes")
    with pytest.raises(DataError, match="data.vocabulary must be one of text8, bytes"):
        load_text(tmp_path / "src", vocabulary="utf8")


# ---------------------------------------------------------------- likelihood
@pytest.mark.parametrize("net", ["transformer", "path-transformer"])
def test_likelihood_sums_to_one_over_a_restricted_vocabulary(net):
    """Logits masked to three byte values: the joint over all 3^3 rows of D = 3 sums to 1 and
    every marginal of the first r positions too (exact enumeration)."""
    meta = dict(BYTES_META, dim=3, seq_len=3)
    model, _, _ = byte_model_of(meta, net)
    allowed = torch.tensor([0, 65, 255])
    layer = model.network.output_layers()[0]
    with torch.no_grad():
        keep = torch.zeros(256, dtype=torch.bool)
        keep[allowed] = True
        layer.weight[~keep] = 0
        layer.bias[~keep] = -1e4              # exp(-1e4) underflows to exactly 0 in float32
    rows = torch.tensor(list(itertools.product(allowed.tolist(), repeat=3)))
    with torch.no_grad():
        # float32 log-probabilities of 3 variables: each sum is exact to ~1e-6 relative
        assert math.isclose(model.log_prob(rows).exp().sum().item(), 1.0, abs_tol=1e-5)
        for r in (1, 2):
            first = torch.arange(3) < r
            marginal = model.log_prob(rows, first.expand(len(rows), 3)).exp()
            assert math.isclose(marginal.sum().item(), 3 ** (3 - r), abs_tol=1e-4)   # each prefix 3^(3-r) times


# ---------------------------------------------------------------- infilling
def test_prompt_holes_markers_and_spans():
    vocab = vocabulary_of(BYTES_META)
    assert prompt_holes(b"a_b__", vocab) == (b"a\0b\0\0", pytest.approx([False, True, False, True, True]))
    text, holes = prompt_holes("x□y□".encode(), vocab, "□".encode())
    assert text == b"x\0y\0" and holes.tolist() == [False, True, False, True]
    text, holes = prompt_holes(b"snake_case", vocab, spans=parse_spans("0:2,8:10"))
    assert text == b"snake_case" and holes.tolist() == [True] * 2 + [False] * 6 + [True] * 2
    with pytest.raises(UserError, match="beyond the text's 10 bytes"):
        prompt_holes(b"snake_case", vocab, spans=[(8, 11)])
    with pytest.raises(UserError, match="START:END"):
        parse_spans("5:3")
    text8 = vocabulary_of(TEXT8_META)
    assert prompt_holes(b"Th#, Qu#ck!", text8, b"#")[0] == b"th  qu ck"
    with pytest.raises(UserError, match="spans"):
        prompt_holes(b"abc", text8, spans=[(0, 1)])


def test_windows_fill_every_hole_once_and_keep_every_observed_byte():
    """A fill that marks what it draws: each hole is drawn once, from a window where it has
    at least D/4 observed-or-filled neighbours on each side where the text has them."""
    dim, length = 8, 45
    tokens = torch.arange(length) % 50 + 1
    holes = torch.zeros(length, dtype=torch.bool)
    holes[[0, 5, 6, 7, 20, 21, 33, 44]] = True
    calls = []

    def fill(x, observed):
        calls.append(observed.clone())
        return torch.where(observed, x, 200 + len(calls))

    out = fill_windows(tokens, holes, dim, 2, fill)
    assert torch.equal(out[:, ~holes], tokens[~holes].expand(2, -1))
    assert (out[:, holes] > 200).all() and len(calls) <= math.ceil(2 * length / dim)


@pytest.mark.parametrize("net", ["transformer", "path-transformer"])
def test_infill_gives_back_every_observed_byte(byte_model, path_model, net):
    model, _, meta = byte_model if net == "transformer" else path_model
    gen = torch.Generator().manual_seed(0)
    for prompt, extra in [(b"ab_d", 0), ("∑_x\n_".encode(), 3), (b"0123456789_bcdef_hij", 0)]:
        fills = infill(model, meta, prompt, num=3, generator=gen, continuation=extra)
        keep = [i for i, c in enumerate(prompt) if c != ord("_")]
        for fill in fills:
            assert len(fill) == len(prompt) + extra
            assert all(fill[i] == prompt[i] for i in keep)
    for options, message in (({"text": 5}, "str or bytes, got int"), ({"num": 2.5}, "num must be an integer"),
                             ({"continuation": 2.5}, "continuation .* must be an integer >= 0"),
                             ({"continuation": -1}, "continuation .* must be an integer >= 0")):
        with pytest.raises(UserError, match=message):
            infill(model, meta, **{"text": b"ab_d", **options})


def test_cli_infilling_options(tmp_path, byte_model, capsys):
    model, config, meta = byte_model
    checkpoint.save(tmp_path / "run", model.state_dict(), config, meta, step=0)
    run = str(tmp_path / "run")
    prompt = "snake_case\nline two_\n".encode()
    (tmp_path / "p.txt").write_bytes(prompt)
    capsys.readouterr()
    assert main(["sample", run, "--text-file", str(tmp_path / "p.txt"), "--holes", "0:2,14:16", "--num", "2",
                 "--output", str(tmp_path / "fill.bin"), "--seed", "1"]) == 0
    out = capsys.readouterr().out
    for i in (1, 2):
        filled = (tmp_path / f"fill.{i}.bin").read_bytes()
        assert len(filled) == len(prompt) and filled[2:14] == prompt[2:14] and filled[16:] == prompt[16:]
        assert filled.decode("utf-8", "replace") in out             # printed with replacement characters
    assert main(["sample", run, "--text", "a?c", "--hole-marker", "?", "--continue", "5", "--num", "1"]) == 0
    filled = capsys.readouterr().out.splitlines()[-1]
    assert filled.startswith("filled:   a")
    for argv, message in [(["--holes", "1:2"], "give --text or --text-file"),
                          (["--text", "a", "--text-file", "p"], "not both"),
                          (["--text", "a_", "--holes", "0:1", "--hole-marker", "#"], "not both"),
                          (["--text", "abc", "--holes", "2:9"], "beyond the text's 3 bytes"),
                          (["--text-file", str(tmp_path / "missing")], "--text-file")]:
        assert main(["sample", run, *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1


def test_prompts_that_are_not_utf8_and_odd_outputs(tmp_path, byte_model, capsys):
    """argv bytes that are not UTF-8 reach the model as those very bytes (Python keeps them
    as lone surrogates); spans take ASCII digits only; an empty --output is refused."""
    model, config, meta = byte_model
    checkpoint.save(tmp_path / "run", model.state_dict(), config, meta, step=0)
    run = str(tmp_path / "run")
    prompt = b"\xff_\xfe".decode("utf-8", "surrogateescape")          # what bash's $'\xff_\xfe' gives Python
    assert main(["sample", run, "--quiet", "--text", prompt, "--num", "1", "--output", str(tmp_path / "f")]) == 0
    filled = (tmp_path / "f").read_bytes()
    assert len(filled) == 3 and filled[0] == 0xFF and filled[2] == 0xFE
    marker = b"\xfe".decode("utf-8", "surrogateescape")
    assert main(["sample", run, "--quiet", "--text", prompt, "--hole-marker", marker, "--num", "1"]) == 0
    assert parse_spans(" 1 : 3 ") == [(1, 3)]
    capsys.readouterr()
    for argv, message in [(["--text", "hello", "--holes", "\u00b2:3"], "START:END"),   # isdigit(), yet no int
                          (["--text", "hello", "--holes", "\u0661:3"], "START:END"),   # an Arabic-Indic one
                          (["--text", "h_", "--output", ""], "--output"),
                          (["--text", "h_", "--output", "", "--num", "2"], "--output")]:
        assert main(["sample", run, "--quiet", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
