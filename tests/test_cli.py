"""The command line as a user meets it: commands that work, and one-line errors for mistakes."""

import json

import numpy as np
import pytest
from PIL import Image

from anyorder.build import build_model
from anyorder.cli import main
from anyorder.config import Config, ConfigError, load_config, preset_names
from anyorder.errors import UserError

TINY_TEXT = ["data.seq_len=16", "net.width=32", "net.depth=1", "net.heads=2", "train.batch_size=8",
             "train.steps=6", "train.eval_every=3", "train.eval_rows=8", "train.log_every=3"]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "text"
    assert main(["train", "--quiet", *TINY_TEXT, f"train.out={run}"]) == 0
    return run


def test_train_eval_sample_text(text_run, tmp_path, capsys):
    capsys.readouterr()
    report = tmp_path / "eval.json"
    assert main(["eval", str(text_run), "--rows", "8", "--quiet", "--json", str(report)]) == 0
    assert "joint" in capsys.readouterr().out
    result = json.loads(report.read_text())
    assert result["rows"] == 8 and result["joint_bpd"] > result["marginal_bpd"] > 0
    assert main(["sample", str(text_run), "--text", "th_ qu_ck", "--num", "2"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("filled:")]
    assert len(lines) == 2
    for line in lines:
        filled = line.split(":", 1)[1].strip("\n")[3:]
        assert len(filled) == 9 and filled[:2] == "th" and filled[3:6] == " qu" and filled[7:9] == "ck"
    assert main(["sample", str(text_run), "--random-mask", "0.5", "--num", "1"]) == 0
    out = capsys.readouterr().out
    assert "original:" in out and "masked:" in out and "filled:" in out


def test_image_inpainting_writes_a_grid(tmp_path, capsys):
    pytest.importorskip("sklearn")
    run = tmp_path / "digits"
    assert main(["train", "--quiet", "--config", "digits-cpu", "net.channels=8", "net.attention_resolutions=[]",
                 "train.steps=3", "train.batch_size=8", "train.eval_rows=8", f"train.out={run}"]) == 0
    assert main(["sample", str(run), "--inpaint", "left-half", "--num", "3", "--out", str(tmp_path / "pics")]) == 0
    grid = Image.open(tmp_path / "pics" / "inpaint.png")
    arrays = np.load(tmp_path / "pics" / "inpaint.npz")
    assert arrays["filled"].shape == (3, 64) and grid.size[0] > grid.size[1] / 3
    kept = arrays["observed"]
    assert (arrays["filled"][kept] == arrays["original"][kept]).all()
    bad = tmp_path / "mask.png"
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(bad)
    capsys.readouterr()
    assert main(["sample", str(run), "--inpaint", str(bad), "--out", str(tmp_path / "failed")]) == 2
    assert "error" in capsys.readouterr().err and not (tmp_path / "failed").exists()
    (tmp_path / "a-file").write_text("")
    assert main(["sample", str(run), "--out", str(tmp_path / "a-file")]) == 2
    assert "is a file" in capsys.readouterr().err
    # a file that is no picture, named without .png, is read as one (it was taken for an unknown mask kind)
    assert main(["sample", str(run), "--inpaint", str(tmp_path / "a-file"), "--out", str(tmp_path / "failed")]) == 2
    assert "cannot read mask picture" in capsys.readouterr().err
    assert main(["sample", str(run), "--text", "a_b"]) == 2
    assert "holds an image model" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["train", "--config", "no-such-preset"], "no preset or file"),
    (["train", "train.stepz=3"], "unknown key"),
    (["train", "optim.lr=fast"], "must be a number"),
    (["train", "nonsense"], "section.key=value"),
    (["train", "net.widht=3", "data.seq_len=8", "train.steps=1"], "unknown key"),
    (["train", "data.source=/no/such/file.txt"], "no such"),
    (["eval", "/no/such/run"], "no checkpoint"),
    (["train", "--resume", "/no/such/run"], "cannot resume"),
    (["train", "--config", "text-bytes-cpu", "net.heads=0", "train.steps=1"], "heads must be >= 1"),
    (["train", "--config", "text-bytes-cpu", "net.width=30", "train.steps=1"], "divisible by heads"),
])
def test_user_mistakes_are_one_line_errors(argv, message, capsys, tmp_path):
    assert main(argv + [f"train.out={tmp_path / 'x'}"] if argv[0] == "train" and "--resume" not in argv else argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("anyorder: error:") and message in err.lower() and "\n" not in err


def test_long_prompt_window_by_window_and_corrupt_checkpoint(text_run, tmp_path, capsys):
    capsys.readouterr()
    prompt = "to be or not to be that is the qu_stion whether tis nobler in the m_nd to suffer"
    assert main(["sample", str(text_run), "--text", prompt, "--num", "1", "--quiet"]) == 0
    filled = capsys.readouterr().out.splitlines()[-1][10:]
    assert len(filled) == len(prompt) and all(a == b for a, b in zip(filled, prompt) if b != "_")
    broken = tmp_path / "model.safetensors"
    broken.write_bytes(b"\x00" * 64)
    assert main(["eval", str(broken)]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err


def test_every_preset_parses_and_builds():
    metas = {"text": {"kind": "text", "dim": 250, "num_classes": 27},
             "image": {"kind": "image", "dim": 3 * 32 * 32, "num_classes": 256, "shape": [3, 32, 32]},
             "table": {"kind": "table", "dim": 11, "num_classes": None}}
    for name in preset_names():
        config = load_config(name)
        meta = dict(metas[config.data["kind"]])
        if config.data.get("source") in ("digits", "mnist"):
            meta.update(shape=[1, 8, 8] if config.data["source"] == "digits" else [1, 28, 28], dim=64 if config.data["source"] == "digits" else 784)
        if config.net.get("width", 0) > 512 or config.net.get("channels", 0) > 128:
            continue  # paper-sized: parsing is checked, building takes too long for a unit test
        assert build_model(config, meta) is not None


def test_config_round_trip_and_types():
    config = load_config("text-cpu", ["optim.lr=1", "train.steps=7"])
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)
    assert Config.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="bool"):
        load_config("text-cpu", ["model.reweight=maybe"])
    with pytest.raises(ConfigError, match="unknown config section"):
        Config.from_dict({"optimiser": {}})


def test_impute_a_table_it_never_saw_keeps_observed_text(tmp_path, capsys):
    """Train on one table, impute another with the same columns and 20% of cells removed:
    the output is complete and every observed cell is the input's text, byte for byte."""
    rng = np.random.default_rng(0)
    cov = [[1.0, 0.8, 0.3], [0.8, 1.0, 0.5], [0.3, 0.5, 1.0]]
    source = tmp_path / "train.csv"
    source.write_text("a,b,c\n" + "".join(",".join(f"{v:.5f}" for v in row) + "\n"
                                          for row in rng.multivariate_normal([0, 0, 0], cov, 300)))
    run = tmp_path / "run"
    assert main(["train", "--quiet", "--config", "magic-cpu", f"data.source={source}", "net.width=32",
                 "net.depth=1", "train.steps=20", "train.batch_size=32", "train.eval_rows=16",
                 f"train.out={run}"]) == 0
    fresh = rng.multivariate_normal([0, 0, 0], cov, 40)
    hidden = rng.random(fresh.shape) < 0.2
    hidden[hidden.all(1), 0] = False
    styles = ["{:.3e}", "{:.2f}", "{:+.4f}", "{:.1f}0"]      # texts a float64 would not print back
    cells = [[("NaN" if (i + j) % 2 else "") if hidden[i, j] else styles[(i + j) % 4].format(v)
              for j, v in enumerate(row)] for i, row in enumerate(fresh)]
    given = tmp_path / "holes.tsv"
    given.write_text("a\tb\tc\n" + "".join("\t".join(row) + "\n" for row in cells))
    out = tmp_path / "filled.csv"
    assert main(["impute", str(run), "--input", str(given), "--output", str(out), "--num-samples", "3"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "a,b,c" and len(lines) == 41
    for i, line in enumerate(lines[1:]):
        row = line.split(",")
        for j, text in enumerate(row):
            if hidden[i, j]:
                assert np.isfinite(float(text))
            else:
                assert text == cells[i][j]
    assert main(["impute", str(run), "--input", str(given), "--output", str(out), "--reduce", "conditional-mean"]) == 0
    capsys.readouterr()
    given.write_text("a\tb\tc\n1\t2\tx\n")
    stale = out.read_text()
    assert main(["impute", str(run), "--input", str(given), "--output", str(out)]) == 2
    assert "not numeric" in capsys.readouterr().err and out.read_text() == stale
    assert not list(tmp_path.glob(".*partial"))
    assert main(["eval", str(run), "--num-importance", "4", "--quiet"]) == 2
    assert "for ACE models" in capsys.readouterr().err


def _correlated_pair_csv(path, rows: int, seed: int):
    """A two-column table file (b = a + noise) with `rows` rows; returns its path."""
    rng = np.random.default_rng(seed)
    path.write_text("a,b\n" + "".join(f"{u:.4f},{u + v:.4f}\n" for u, v in rng.normal(size=(rows, 2))))
    return path


def test_eval_ace_with_both_conditionals(tmp_path, capsys):
    source = _correlated_pair_csv(tmp_path / "train.csv", 200, seed=1)
    run = tmp_path / "ace"
    assert main(["train", "--quiet", "--config", "magic-ace-cpu", f"data.source={source}", "data.drop=[]", "net.width=16",
                 "net.depth=1", "net.context=4", "net.energy_width=8", "net.energy_depth=1", "train.steps=3",
                 "train.batch_size=16", "train.eval_rows=8", f"train.out={run}"]) == 0
    reports = {}
    for which in ("proposal", "energy"):
        out = tmp_path / f"{which}.json"
        assert main(["eval", str(run), "--quiet", "--rows", "8", "--energy-model", which,
                     "--num-importance", "5", "--json", str(out)]) == 0
        reports[which] = json.loads(out.read_text())
    assert "nats per row" in capsys.readouterr().out
    assert reports["proposal"]["joint_loglik"] != reports["energy"]["joint_loglik"]


# ---------------------------------------------------------------- bad input, one line each

def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert err.startswith("anyorder: error:") and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("argv,option", [
    (["eval", "RUN", "--rows", "-5"], "--rows"), (["eval", "RUN", "--batch-size", "0"], "--batch-size"),
    (["eval", "RUN", "--num-draws", "0"], "--num-draws"), (["sample", "RUN", "--num", "-1"], "--num"),
    (["sample", "RUN", "--temperature", "nan"], "--temperature"), (["sample", "RUN", "--temperature", "-1"], "--temperature"),
    (["sample", "RUN", "--random-mask", "1.5"], "--random-mask"), (["eval", "RUN", "--seed", "-3"], "--seed"),
    (["impute", "RUN", "--input", "a", "--output", "b", "--num-samples", "0"], "--num-samples"),
    (["train", "--threads", "0"], "--threads"), (["eval", "RUN", "--num-importance", "0"], "--num-importance"),
    (["eval", "RUN", "--seed", "9" * 25], "--seed"),
])
def test_numeric_options_are_checked_before_any_work(argv, option, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and option in capsys.readouterr().err


def test_outputs_are_checked_before_the_work_and_nothing_is_left_behind(text_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["eval", str(text_run), "--json", str(tmp_path)]) == 2
    _one_line_error(capsys, "--json", "is a folder")
    assert main(["eval", str(text_run), "--json", str(tmp_path / "no" / "such" / "r.json")]) == 2
    _one_line_error(capsys, "does not exist")
    assert main(["sample", str(text_run), "--out", "pics"]) == 2
    _one_line_error(capsys, "--out is for image models")
    assert main(["sample", str(text_run), "--inpaint", "centre"]) == 2
    _one_line_error(capsys, "--inpaint is for image models")
    # --output a folder, with several fills: refused (fills went to the folder's name with .1, .2, … beside it)
    (tmp_path / "fills").mkdir()
    assert main(["sample", str(text_run), "--text", "a_b", "--num", "2", "--output", str(tmp_path / "fills")]) == 2
    _one_line_error(capsys, "--output", "is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fills"] and not any((tmp_path / "fills").iterdir())
    (tmp_path / "fills").rmdir()
    assert list(tmp_path.iterdir()) == []                      # no samples/ or pics/ folder


def test_tiny_temperatures_are_the_mode_and_prompts_are_cleaned(text_run, capsys):
    capsys.readouterr()
    outputs = []
    for temperature in ("1e-45", "0"):
        assert main(["sample", str(text_run), "--text", "Th_, Qu_ck!", "--num", "2", "--temperature", temperature,
                     "--seed", "3"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert "prompt:   th_ qu_ck (cleaned like the training text)" in outputs[0]
    filled = [line[10:] for line in outputs[0].splitlines() if line.startswith("filled:")]
    assert len(filled) == 2 and all(f[:2] == "th" and f[3:6] == " qu" and f[7:9] == "ck" for f in filled)


def test_queries_with_nothing_to_do_or_too_many_draws_are_refused(text_run, capsys):
    """A prompt without holes (or an empty one) and no continuation asks for nothing; more
    one-step draws than variables cost more than the exact answer; draws are for one-step."""
    capsys.readouterr()
    for extra in (["--text", "no holes here"], ["--text", ""], ["--text", "ab__", "--hole-marker", "+"]):
        assert main(["sample", str(text_run), "--quiet", *extra]) == 2
        _one_line_error(capsys, "nothing to fill" if extra[1] else "the prompt is empty")
    assert main(["sample", str(text_run), "--quiet", "--text", "no holes", "--continue", "3", "--num", "1"]) == 0
    filled = capsys.readouterr().out.splitlines()[-1][10:]
    assert len(filled) == len("no holes") + 3 and filled.startswith("no holes")
    assert main(["eval", str(text_run), "--quiet", "--estimator", "one-step", "--num-draws", "17"]) == 2
    _one_line_error(capsys, "--num-draws 17 is more than the 16 variables")
    assert main(["eval", str(text_run), "--quiet", "--num-draws", "3"]) == 2
    _one_line_error(capsys, "--num-draws averages draws of --estimator one-step")


def test_a_checkpoint_with_non_finite_weights_is_refused(text_run, tmp_path, capsys):
    from anyorder import checkpoint
    weights, config, meta, step = checkpoint.read(text_run)
    weights["network.head.weight"].view(-1)[7] = float("nan")
    checkpoint.save(tmp_path, weights, config, meta, step)
    for argv in (["eval", str(tmp_path), "--quiet"], ["sample", str(tmp_path)]):
        assert main(argv) == 2
        _one_line_error(capsys, "non-finite weights", "network.head.weight")


def test_user_errors_bugs_debug_and_os_errors(text_run, capsys, monkeypatch):
    import anyorder.cli as cli
    with pytest.raises(UserError):
        main(["eval", "/no/such/run", "--debug"])            # --debug: the traceback of a user error
    monkeypatch.setattr(cli, "evaluate", lambda *a, **k: int("a bug"))
    with pytest.raises(ValueError, match="invalid literal"):
        main(["eval", str(text_run), "--quiet"])             # a plain ValueError is a bug: traceback

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/the/file")

    monkeypatch.setattr(cli, "load_model", denied)
    capsys.readouterr()
    assert main(["eval", str(text_run)]) == 2
    _one_line_error(capsys, "/the/file: Permission denied")


def test_impute_never_overwrites_its_input(tmp_path, capsys):
    source = _correlated_pair_csv(tmp_path / "train.csv", 60, seed=2)
    run = tmp_path / "run"
    assert main(["train", "--quiet", "--config", "magic-cpu", f"data.source={source}", "net.width=8", "net.depth=1",
                 "train.steps=2", "train.batch_size=8", "train.eval_rows=4", f"train.out={run}"]) == 0
    holes = tmp_path / "holes.csv"
    holes.write_text("a,b\n1.5,\n,2.5\n")
    kept = holes.read_text()
    capsys.readouterr()
    for output, needle in ((holes, "also the input"), (tmp_path / "." / "holes.csv", "also the input"),
                           (tmp_path, "is a folder"), (tmp_path / "none" / "x.csv", "does not exist")):
        assert main(["impute", str(run), "--input", str(holes), "--output", str(output)]) == 2
        _one_line_error(capsys, needle)
    assert holes.read_text() == kept
    assert main(["eval", str(run), "--energy-model", "proposal", "--quiet"]) == 2
    _one_line_error(capsys, "for ACE models")
