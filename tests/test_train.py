"""The trainer: resume after a kill, DDP on 2 CPU processes, checkpoints, evaluation."""

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from anyorder import checkpoint, files
from anyorder.build import load_model
from anyorder.config import load_config
from anyorder.data import Dataset, load_data
from anyorder.errors import UserError
from anyorder.evaluate import evaluate
from anyorder.train import (Objective, RunDirectory, Training, TrainingDiverged, resume_config, train, train_step,
                            training_batch)

TINY = ["data.seq_len=16", "net.width=32", "net.depth=1", "net.heads=2", "train.batch_size=8",
        "train.log_every=5", "train.eval_every=50", "train.eval_rows=16", "optim.warmup=5", "optim.ema=0.9",
        "train.precision=fp32"]  # the runs compared here differ in threads and shards: bf16 rounds differently


def tiny_config(out, *more):
    return load_config("text-cpu", TINY + [f"train.out={out}", *more])


def cli(command, *args):
    """A CLI subprocess with this process's thread count (results depend on it)."""
    return [sys.executable, "-m", "anyorder.cli", command, "--threads", str(torch.get_num_threads()), *args]


def saved_step(run_dir: Path) -> int:
    try:
        return checkpoint.read(run_dir)[3]
    except checkpoint.CheckpointError:
        return 0


def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path):
    steps = 150
    full = train(tiny_config(tmp_path / "full", f"train.steps={steps}", "train.ckpt_every=10"), progress=False)
    run = tmp_path / "killed"
    args = TINY + [f"train.out={run}", f"train.steps={steps}", "train.ckpt_every=10"]
    proc = subprocess.Popen(cli("train", "--quiet", *args), stderr=subprocess.PIPE)
    deadline = time.time() + 300   # generous: a loaded machine starts the subprocess slowly
    while saved_step(run) < 20 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = saved_step(run)
    assert 20 <= killed_at < steps, "the run must be killed part-way for this test to mean anything"
    done = subprocess.run(cli("train", "--quiet", "--resume", str(run)), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    a, b = load_file(full / "model.safetensors"), load_file(run / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with open(run / "metrics.csv") as f:
        logged = [int(row["step"]) for row in csv.DictReader(f)]
    assert logged == list(range(5, steps + 1, 5))  # the curve continues, no gaps, no repeats


@pytest.mark.parametrize("kind", ["adamw", "muon"])
def test_two_process_gloo_ddp_all_reduces_the_full_batch_gradient(tmp_path, kind):
    """Each process of a 2-process run steps with the gradient of the whole global batch,
    and both end with the same weights. Checked on the gradient, not on weights after many
    steps: Muon's Newton–Schulz runs in bf16 and can turn the last-bit differences of a sum
    reduced in another order into different roundings, differently on each CPU.

    Tolerance: DDP averages two half-batch means where one process takes one mean, so the
    two differ by float32 rounding of reordered sums, at most ~n·2^-24 of the summed
    magnitudes (n ≤ a few hundred terms here): 1e-4 of a tensor's largest entry bounds it
    with a wide margin, while a wrong shard or a missing all-reduce moves gradients by
    amounts of their own size."""
    args = TINY + ["train.steps=6", "optim.ema=0.0", "train.batch_size=8", f"optim.kind={kind}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    worker = Path(__file__).with_name("ddp_worker.py")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(worker), str(tmp_path), *args], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run = Training(load_config("text-cpu", args + [f"train.out={tmp_path / 'one'}"]))
    x, drawn = training_batch(run.data, run.model, run.config.train.batch_size,
                              torch.Generator().manual_seed(run.config.train.seed))
    run.objective(x, drawn).backward()
    for rank in (0, 1):
        grads = torch.load(tmp_path / f"grad{rank}.pt")
        assert grads.keys() == {name for name, p in run.model.named_parameters() if p.grad is not None}
        for name, p in run.model.named_parameters():
            if p.grad is not None:
                scale = p.grad.abs().max().item()
                assert torch.allclose(grads[name], p.grad, rtol=0, atol=1e-4 * scale + 1e-12), (rank, name)
    a, b = torch.load(tmp_path / "weights0.pt"), torch.load(tmp_path / "weights1.pt")
    assert all(torch.equal(a[k], b[k]) for k in a), "the processes must apply the same steps"
    first = run.model.state_dict()
    assert any(not torch.equal(a[k], first[k]) for k in a if a[k].is_floating_point()), "the run must move"


def test_checkpoint_round_trip_and_damage(tmp_path):
    run = train(tiny_config(tmp_path / "run", "train.steps=10", "train.ckpt_every=10"), progress=False)
    model, config, meta = load_model(run)
    assert meta["kind"] == "text" and meta["num_classes"] == 27 and config.train.steps == 10
    x = load_data(config.data).split("test")[:4]
    with torch.no_grad():
        first = model.log_prob(x)
        again = load_model(run / "model.safetensors")[0].log_prob(x)
    assert torch.equal(first, again)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes((run / "model.safetensors").read_bytes()[:200])
    with pytest.raises(checkpoint.CheckpointError, match="cannot read"):
        load_model(broken)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(checkpoint.CheckpointError, match="not an anyorder checkpoint"):
        load_model(foreign)
    (run / "train_state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="cannot read"):
        train(tiny_config(run), resume=True, progress=False)
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint"):
        load_model(tmp_path / "missing")


def test_exact_and_one_step_evaluation_agree(tmp_path):
    run = train(tiny_config(tmp_path / "run", "train.steps=60", "train.ckpt_every=60"), progress=False)
    model, config, _ = load_model(run)
    rows = load_data(config.data).split("test")[:64]
    exact = evaluate(model, rows, "exact", progress=False)
    one = evaluate(model, rows, "one-step", num_draws=8, progress=False)
    for name in ("joint", "marginal"):
        gap = abs(exact[f"{name}_bpd"] - one[f"{name}_bpd"])
        assert gap < 3 * (exact[f"{name}_bpd_se"] ** 2 + one[f"{name}_bpd_se"] ** 2) ** 0.5
    assert exact["joint_bpd"] < 4.6  # trained a little: better than the uniform 4.75
    assert exact["marginal_bpd"] < exact["joint_bpd"]  # normalised by D: fewer variables, fewer bits


# ---------------------------------------------------------------- nothing lost

def _files(run: Path) -> dict:
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


@pytest.mark.parametrize("bad", ["model.protocol=strided(0)", "net.heads=0", "optim.lr=.inf", "optim.decay=cos", "optim.kind=sgd",
                                 "train.eval_rows=0", "net.depth=-2", "model.query=full(0.5)"])
def test_a_bad_option_stops_before_an_existing_run_is_touched(tmp_path, bad):
    run = train(tiny_config(tmp_path / "run", "train.steps=5", "train.ckpt_every=5"), progress=False)
    before = _files(run)
    with pytest.raises(UserError):
        train(tiny_config(run, "train.steps=5", bad), progress=False)
    with pytest.raises(UserError):
        train(tiny_config(run, "train.steps=5", bad), resume=True, progress=False)
    assert _files(run) == before


def test_a_directory_holding_a_run_a_file_or_nothing_is_refused(tmp_path, monkeypatch):
    run = train(tiny_config(tmp_path / "run", "train.steps=5", "train.ckpt_every=5"), progress=False)
    before = _files(run)
    with pytest.raises(UserError, match="already holds a run"):
        train(tiny_config(run, "train.steps=5"), progress=False)
    with pytest.raises(UserError, match="is a file"):
        train(tiny_config(run / "config.yaml", "train.steps=5"), progress=False)
    assert _files(run) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("my own notes")
    monkeypatch.chdir(mine)
    with pytest.raises(UserError, match="train.out is empty"):
        train(tiny_config("", "train.steps=5"), progress=False)
    with pytest.raises(UserError, match="already holds config.yaml but no anyorder run"):
        train(tiny_config(".", "train.steps=5"), progress=False)
    assert (mine / "config.yaml").read_text() == "my own notes" and sorted(os.listdir(mine)) == ["config.yaml"]


def test_a_run_directory_is_locked_while_training(tmp_path):
    with RunDirectory(tmp_path / "run", resume=False):
        with pytest.raises(UserError, match="another training is using"):
            train(tiny_config(tmp_path / "run", "train.steps=5"), progress=False)
    assert not (tmp_path / "run" / "config.yaml").exists()
    train(tiny_config(tmp_path / "run", "train.steps=5"), progress=False)    # free again once released


def test_two_trainings_at_once_into_one_directory_one_is_refused(tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen(cli("train", "--quiet", *TINY, f"train.out={run}", "train.steps=1000000"),
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300   # generous: a loaded machine starts the subprocess slowly
    while not (run / "config.yaml").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    second = subprocess.run(cli("train", "--quiet", *TINY, f"train.out={run}", "train.steps=5"),
                            capture_output=True, text=True)
    first.send_signal(signal.SIGTERM)
    assert first.wait() == 143 and "SIGTERM" in first.stderr.read()
    assert second.returncode == 2 and "another training is using" in second.stderr
    with open(run / "metrics.csv") as f:
        steps = [int(row["step"]) for row in csv.DictReader(f)]
    assert len(steps) == len(set(steps))
    assert not list(run.glob(".*" + files.SUFFIX))


# ---------------------------------------------------------------- nothing silently wrong

def test_training_stops_at_the_first_non_finite_loss_and_saves_nothing(tmp_path):
    """A value of 1e30 makes the Gaussian mixture's z² overflow: the loss is inf at step 1."""
    rows = torch.randn(64, 3)
    rows[:, 0] = 1e30
    data = Dataset(kind="table", dim=3, num_classes=None, train=rows, splits={"valid": rows[:8]},
                   meta={"columns": ["a", "b", "c"], "mean": [0.0] * 3, "std": [1.0] * 3})
    config = load_config("magic-cpu", ["net.width=16", "net.depth=1", "train.batch_size=8", "train.steps=6",
                                       "train.log_every=3", f"train.out={tmp_path / 'run'}"])
    with pytest.raises(TrainingDiverged, match="diverged at step 1: loss (nan|inf).*no checkpoint"):
        train(config, progress=False, data=data)
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_non_finite_checkpoints_are_refused_at_load(tmp_path):
    run = train(tiny_config(tmp_path / "run", "train.steps=5", "train.ckpt_every=5"), progress=False)
    weights, config, meta, step = checkpoint.read(run)
    weights["network.head.bias"][3] = float("nan")
    checkpoint.save(run, weights, config, meta, step)
    with pytest.raises(checkpoint.CheckpointError, match="non-finite weights .network.head.bias"):
        load_model(run)
    state = checkpoint.read_state(run)
    state["model"]["network.head.bias"][0] = float("inf")
    torch.save(state, run / "train_state.pt")
    with pytest.raises(checkpoint.CheckpointError, match="non-finite"):
        train(tiny_config(run), resume=True, progress=False)
    del state["rng"]
    torch.save(state, run / "train_state.pt")
    with pytest.raises(checkpoint.CheckpointError, match="missing rng"):
        checkpoint.read_state(run)


def test_resume_with_dropout_continues_exactly(tmp_path):
    """Dropout draws from the global torch RNG: a resumed run must restore it."""
    args = ("train.steps=12", "train.ckpt_every=6", "net.dropout=0.3", "optim.ema=0.0", "optim.decay=none")
    full = train(tiny_config(tmp_path / "full", *args), progress=False)
    half = train(tiny_config(tmp_path / "half", *args[1:], "train.steps=6"), progress=False)
    torch.manual_seed(123)                     # whatever the global RNG holds now must not matter
    train(resume_config(half, ["train.steps=12"]), resume=True, progress=False)
    a, b = load_file(full / "model.safetensors"), load_file(half / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_a_changed_network_names_the_keys(tmp_path):
    run = train(tiny_config(tmp_path / "run", "train.steps=5", "train.ckpt_every=5"), progress=False)
    with pytest.raises(checkpoint.CheckpointError, match=r"net.width \(32 -> 48\)"):
        train(resume_config(run, ["net.width=48"]), resume=True, progress=False)
    with pytest.raises(checkpoint.CheckpointError, match=r"data.seq_len \(16 -> 12\)"):
        train(resume_config(run, ["data.seq_len=12"]), resume=True, progress=False)


def test_one_step_function_serves_the_trainer(tmp_path):
    """`train_step` on `training_batch` from the same seeds gives the trainer's weights."""
    config = tiny_config(tmp_path / "run", "train.steps=3", "optim.ema=0.0", "optim.warmup=0", "optim.decay=none")
    run = train(config, progress=False)
    torch.manual_seed(config.train.seed)
    data = load_data(config.data)
    from anyorder.build import build_model, describe
    from anyorder.optim import optimizer_for
    model = build_model(config, describe(data))
    o = config.optim
    optimizer = optimizer_for(model, o)
    gen = torch.Generator().manual_seed(config.train.seed)
    for _ in range(3):
        x, node = training_batch(data, model, config.train.batch_size, gen)
        train_step(Objective(model), optimizer, x, node, o.lr, o.clip, contextlib.nullcontext())
    saved = load_file(run / "model.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def test_ace_proposal_draws_leave_the_shared_batch_generator_alone(tmp_path):
    """Every process draws the global batch from one generator; ACE's proposal draws (a
    number that differs per process) must come from elsewhere, or the processes drift apart."""
    rows = torch.randn(64, 3)
    data = Dataset(kind="table", dim=3, num_classes=None, train=rows, splits={"valid": rows[:8]},
                   meta={"columns": ["a", "b", "c"], "mean": [0.0] * 3, "std": [1.0] * 3})
    config = load_config("magic-ace-cpu", ["net.width=8", "net.depth=1", "net.context=4", "net.energy_width=8",
                                           "net.energy_depth=1", "train.batch_size=8", f"train.out={tmp_path}"])
    run = Training(config, data)
    reference = torch.Generator().manual_seed(config.train.seed)
    for _ in range(3):
        run.one_step()
        training_batch(data, run.model, config.train.batch_size, reference)
    assert torch.equal(run.gen.get_state(), reference.get_state())
