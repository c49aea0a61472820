"""Run directories under stress: a full disk, a read-only folder, a stop before the first
checkpoint, SIGTERM/SIGINT mid-run. Nothing is lost and every failure is one line.

A full disk is simulated where the OS reports it: the files anyorder opens raise
OSError(ENOSPC) once a byte quota is spent (torch.save turns such an error into its own
RuntimeError; the writer must still report ENOSPC). A read-only folder is simulated the
same way with EROFS, because chmod does not stop root, who runs CI in containers.
"""

import errno
import signal

import pytest
import torch
from safetensors.torch import load_file

from anyorder import budget, checkpoint, files
from anyorder.build import load_model
from anyorder.cli import main
from anyorder.config import load_config
from anyorder.errors import Notice, UserError
from anyorder.train import Training, resume_config, train

TINY = ["data.seq_len=16", "net.width=32", "net.depth=1", "net.heads=2", "train.batch_size=8",
        "train.log_every=2", "train.eval_every=50", "train.eval_rows=8", "optim.warmup=2", "optim.ema=0.9",
        "train.precision=fp32"]


def tiny_config(out, *more):
    return load_config("text-cpu", TINY + [f"train.out={out}", *more])


class Disk:
    """The files anyorder writes, with a byte quota (None: unlimited) or an error for every open."""

    def __init__(self, monkeypatch):
        self.left, self.refuse = None, None
        real_open = open

        class Limited:
            def __init__(self, file):
                self.file = file

            def write(self, data):
                if disk.left is not None:
                    if len(data) > disk.left:
                        disk.left = 0
                        raise OSError(errno.ENOSPC, "No space left on device")
                    disk.left -= len(data)
                return self.file.write(data)

            def __getattr__(self, name):
                return getattr(self.file, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.file.close()

        def fake_open(path, mode="r", *args, **kwargs):
            if disk.refuse is not None:
                raise OSError(disk.refuse, "Read-only file system", str(path))
            return Limited(real_open(path, mode, *args, **kwargs))

        disk = self
        monkeypatch.setattr(files, "open", fake_open, raising=False)


@pytest.fixture
def interruptible():
    """Ctrl-C's usual handler for the test: a process started in the background by a shell
    (nohup, `cmd &`) inherits SIGINT ignored, and a stop request leaves ignored signals alone."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def disk(monkeypatch):
    return Disk(monkeypatch)


def _leftovers(run):
    return list(run.glob(".*" + files.SUFFIX))


def _same_weights(a, b):
    a, b = load_file(a / checkpoint.WEIGHTS), load_file(b / checkpoint.WEIGHTS)
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_full_disk_at_the_first_checkpoint_then_resume_once_space_is_back(tmp_path, disk):
    args = ("train.steps=6", "train.ckpt_every=3")
    full = train(tiny_config(tmp_path / "full", *args), progress=False)
    run = tmp_path / "run"
    disk.left = 2000                    # the config fits, the first checkpoint does not
    with pytest.raises(checkpoint.CheckpointError,
                       match="step-3 checkpoint .* No space left on device; no checkpoint was written yet"):
        train(tiny_config(run, *args), progress=False)
    assert not _leftovers(run) and not (run / checkpoint.WEIGHTS).exists()
    disk.left = None
    with pytest.warns(Notice, match="no checkpoint yet"):
        config = resume_config(run)
    train(config, resume=True, progress=False)
    assert _same_weights(full, run)


def test_full_disk_at_a_later_checkpoint_keeps_the_earlier_one(tmp_path, disk):
    args = ("train.steps=6", "train.ckpt_every=3", "optim.ema=0.0", "optim.decay=none")   # no schedule on steps
    full = train(tiny_config(tmp_path / "full", *args), progress=False)
    run = tmp_path / "run"
    train(tiny_config(run, *args[1:], "train.steps=3"), progress=False)
    kept = (run / checkpoint.WEIGHTS).read_bytes(), (run / checkpoint.STATE).read_bytes()
    disk.left = 30_000                  # the weights (~65 kB) do not fit
    with pytest.raises(checkpoint.CheckpointError, match="No space left.*checkpoint of step 3 is kept.*--resume"):
        train(resume_config(run, ["train.steps=6"]), resume=True, progress=False)
    assert ((run / checkpoint.WEIGHTS).read_bytes(), (run / checkpoint.STATE).read_bytes()) == kept
    assert not _leftovers(run)
    disk.left = None
    train(resume_config(run, ["train.steps=6"]), resume=True, progress=False)
    assert _same_weights(full, run)


def test_torch_save_reports_the_disk_error_not_its_own(tmp_path, disk):
    disk.left = 100
    with pytest.raises(OSError) as err:
        files.write_atomic(tmp_path / "x.pt", lambda f: torch.save({"a": torch.zeros(1000)}, f))
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "x.pt")
    assert not list(tmp_path.iterdir())


def test_read_only_run_directory_stops_before_any_step(tmp_path, disk, monkeypatch, capsys):
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.setattr(Training, "one_step", lambda self: pytest.fail("a step ran"))
    disk.refuse = errno.EROFS
    with pytest.raises(UserError, match="cannot write in the run directory .*Read-only file system"):
        train(tiny_config(run, "train.steps=3"), progress=False)
    assert main(["train", "--quiet", *TINY, f"train.out={run}", "train.steps=3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Read-only file system" in err


def test_a_disk_without_room_for_a_checkpoint_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(Training, "one_step", lambda self: pytest.fail("a step ran"))
    real = __import__("shutil").disk_usage
    monkeypatch.setattr("anyorder.train.shutil.disk_usage", lambda p: real(p)._replace(free=10_000))
    with pytest.raises(UserError, match="has 0.0 MiB free; a checkpoint of this model needs about 0.3 MiB"):
        train(tiny_config(tmp_path / "run", "train.steps=3"), progress=False)


def test_fit_policy_on_a_full_disk_then_again(tmp_path, disk, capsys):
    run = train(tiny_config(tmp_path / "run", "train.steps=2"), progress=False)
    disk.left = 50
    assert main(["fit-policy", str(run), "--steps", "4", "--rows", "4", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "step_losses.pt: No space left on device" in err
    assert sorted(p.name for p in run.iterdir()) == sorted(["config.yaml", "metrics.csv", checkpoint.WEIGHTS,
                                                           checkpoint.STATE])
    disk.left = None
    assert main(["fit-policy", str(run), "--steps", "4", "--rows", "4", "--quiet"]) == 0
    assert budget.read_policies(run)["4"]["boundaries"][-1] == 16


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_before_the_first_checkpoint_checkpoints_and_resume_matches(tmp_path, monkeypatch, capsys,
                                                                            interruptible, signum, code):
    args = ["train.steps=8", "train.ckpt_every=100"]
    full = train(tiny_config(tmp_path / "full", *args), progress=False)
    real_step = Training.one_step

    def stopped_at_3(self):
        out = real_step(self)
        if self.step == 3:
            signal.raise_signal(signum)
        return out
    monkeypatch.setattr(Training, "one_step", stopped_at_3)
    run = tmp_path / "run"
    assert main(["train", "--quiet", *TINY, *args, f"train.out={run}"]) == code
    assert "stopped at step 3 of 8, checkpoint written; continue with --resume" in capsys.readouterr().err
    assert checkpoint.read(run)[3] == 3
    monkeypatch.setattr(Training, "one_step", real_step)
    assert main(["train", "--quiet", "--resume", str(run)]) == 0
    assert _same_weights(full, run)


def test_a_second_signal_stops_at_once_without_a_checkpoint(tmp_path, monkeypatch, interruptible):
    real_step = Training.one_step

    def twice(self):
        out = real_step(self)
        if self.step == 2:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
        return out
    monkeypatch.setattr(Training, "one_step", twice)
    run = tmp_path / "run"
    assert main(["train", "--quiet", *TINY, "train.steps=8", f"train.out={run}"]) == 130
    assert not (run / checkpoint.WEIGHTS).exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_run_that_never_checkpointed_is_trained_into_again(tmp_path, disk):
    run = tmp_path / "run"
    disk.left = 2000
    with pytest.raises(checkpoint.CheckpointError):
        train(tiny_config(run, "train.steps=4", "train.ckpt_every=2", "net.width=16"), progress=False)
    disk.left = None
    assert (run / "config.yaml").exists() and not (run / checkpoint.WEIGHTS).exists()
    train(tiny_config(run, "train.steps=4"), progress=False)       # another config: it is replaced
    model, config, _ = load_model(run)
    assert config.net["width"] == 32 and checkpoint.read(run)[3] == 4
    with pytest.raises(UserError, match="already holds a run"):
        train(tiny_config(run, "train.steps=4"), progress=False)


def test_stale_partial_files_are_removed_but_live_ones_kept(tmp_path):
    """A temporary file is stale when its pid runs no process and its lock is free."""
    import subprocess
    import sys
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = files.temporary(tmp_path / "out.csv", dead_pid)
    mine = files.temporary(tmp_path / "other.csv")                 # this process: being written
    foreign = tmp_path / f".notes.{dead_pid}.partial"                # not ours: another program's name
    for path in (stale, mine, foreign):
        path.write_text("x")
    files.write_atomic(tmp_path / "new.csv", lambda f: f.write(b"done"))
    assert not stale.exists() and mine.exists() and foreign.exists()
    assert (tmp_path / "new.csv").read_bytes() == b"done"


def test_a_pipe_or_device_is_written_into_and_a_nameless_path_refused(tmp_path):
    """Renaming a temporary file over a device or pipe (`compress RUN IN /dev/null`) would put
    a regular file in its place: such a target is written into as it stands. A path with no
    name ("" or ".") is a folder's, an OSError naming it."""
    import os
    import stat
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)          # a reader, so that the writer's open returns
    try:
        files.write_atomic(pipe, lambda f: f.write(b"through"))
        assert os.read(reader, 100) == b"through"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(pipe).st_mode) and sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]
    for nameless in ("", "."):
        with pytest.raises(IsADirectoryError):
            files.write_atomic(nameless, lambda f: f.write(b"x"))


def test_fit_policy_refuses_an_unwritable_run_directory_before_measuring(tmp_path, monkeypatch, capsys):
    run = train(tiny_config(tmp_path / "run", "train.steps=2"), progress=False)
    monkeypatch.setattr(budget, "step_losses", lambda *a, **k: pytest.fail("step losses were measured"))
    monkeypatch.setattr("anyorder.paths.os.access", lambda path, mode: False)    # as a read-only mount answers
    assert main(["fit-policy", str(run), "--steps", "4", "--rows", "4", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "step_losses.pt" in err and "not writable" in err
