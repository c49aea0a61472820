"""Sizes that cannot fit are refused before anything is allocated; sizes that fit are
worked through in bounded chunks; killed imputations leave nothing behind."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from anyorder import cli, files, memory
from anyorder.cli import main
from anyorder.config import load_config
from anyorder.data.tables import write_table
from anyorder.errors import UserError
from anyorder.heads import MixtureOfGaussiansHead
from anyorder.data.table_io import impute_file
from anyorder.impute import impute
from anyorder.model import AnyOrderModel
from anyorder.nets.resmlp import ResMLP
from anyorder.train import Training, train

TINY = ["data.seq_len=16", "net.width=32", "net.depth=1", "net.heads=2", "train.batch_size=8",
        "train.eval_rows=8", "train.precision=fp32"]
HUGE = 10 ** 12          # rows, samples or draws: more bytes than any machine has


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "text"
    return train(load_config("text-cpu", TINY + ["train.steps=2", f"train.out={run}"]), progress=False)


def test_an_absurd_batch_is_refused_before_anything_is_allocated(tmp_path, monkeypatch):
    monkeypatch.setattr(Training, "one_step", lambda self: pytest.fail("a step ran"))
    config = load_config("text-cpu", TINY + [f"train.batch_size={HUGE}", f"train.out={tmp_path / 'run'}"])
    with pytest.raises(UserError, match=f"train.batch_size {HUGE} needs at least .* GiB .* available: lower it"):
        train(config, progress=False)
    assert not (tmp_path / "run").exists()


def test_an_allocator_error_during_training_names_the_batch_size(tmp_path, monkeypatch):
    def out_of_memory(self):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 400000000000000 bytes.")
    monkeypatch.setattr(Training, "one_step", out_of_memory)
    with pytest.raises(UserError, match="train.batch_size 8 does not fit in memory at step 1.*lower it"):
        train(load_config("text-cpu", TINY + [f"train.out={tmp_path / 'run'}"]), progress=False)
    monkeypatch.setattr(Training, "one_step", lambda self: 1 / 0)
    with pytest.raises(ZeroDivisionError):          # any other failure is a bug and keeps its traceback
        train(load_config("text-cpu", TINY + [f"train.out={tmp_path / 'other'}"]), progress=False)


def test_sampling_too_many_is_refused_at_once(text_run, capsys):
    assert main(["sample", str(text_run), "--num", str(HUGE), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--num {HUGE} needs at least" in err


def test_sampling_works_in_chunks_of_rows(text_run, monkeypatch, capsys):
    """One row per chunk: every sample still keeps the prompt's characters."""
    monkeypatch.setattr(cli, "SAMPLE_CHUNK_BYTES", 1)
    assert main(["sample", str(text_run), "--text", "th_ qu_ck", "--num", "3", "--quiet"]) == 0
    lines = [line.split(":", 1)[1] for line in capsys.readouterr().out.splitlines() if line.startswith("filled:")]
    assert len(lines) == 3
    for line in lines:
        filled = line.strip("\n")[3:]
        assert len(filled) == 9 and filled[:2] == "th" and filled[3:6] == " qu" and filled[7:9] == "ck"


def _model(dim=3):
    torch.manual_seed(0)
    head = MixtureOfGaussiansHead(2)
    return AnyOrderModel(ResMLP(dim, None, head.params_per_variable, width=8, depth=1), head)


def test_imputing_too_many_draws_is_refused_at_once():
    table = torch.tensor([[1.0, float("nan"), 2.0]] * 4)
    with pytest.raises(UserError, match=f"num_samples {HUGE} for 4 rows needs at least"):
        impute(_model(), table, num_samples=HUGE)


def test_memory_check_uses_what_is_available(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 1000)
    memory.check_fits(1000, "x")
    with pytest.raises(UserError, match="x needs at least"):
        memory.check_fits(1001, "x")


def test_a_killed_imputations_partial_file_is_cleaned_by_the_next(tmp_path):
    """A writer killed by SIGKILL mid-write leaves its .partial file; the next impute into
    that folder removes it (its process is gone, its lock free) and writes its own output."""
    target = tmp_path / "filled.csv"
    script = ("import sys, time; from anyorder.files import write_atomic; "
              "write_atomic(sys.argv[1], lambda f: (f.write(b'half'), f.flush(), print('writing', flush=True), "
              "time.sleep(300)))")
    writer = subprocess.Popen([sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    left = files.temporary(target, writer.pid)
    assert left.exists()
    writer.kill()
    writer.wait()
    assert left.exists() and not target.exists()
    raw = np.array([[1.0, np.nan, 2.0], [3.0, 4.0, np.nan], [0.5, 1.5, 2.5]])
    write_table(tmp_path / "in.csv", ["a", "b", "c"], raw)
    meta = {"columns": ["a", "b", "c"], "mean": [0.0] * 3, "std": [1.0] * 3}
    impute_file(_model(), meta, tmp_path / "in.csv", tmp_path / "other.csv", num_samples=2)
    assert not left.exists() and (tmp_path / "other.csv").exists()
    assert not list(tmp_path.glob(".*" + files.SUFFIX))


@pytest.mark.parametrize("kind,given", [
    ("resmlp", dict(dim=4, num_classes=None, out_features=5, levels=[None, 3, None, 2])),
    ("path-transformer", dict(dim=4, num_classes=None, out_features=5, levels=[None, 3, None, 2])),
    ("transformer", dict(dim=8, num_classes=27, out_features=27))])
def test_a_network_larger_than_memory_is_refused_before_it_is_built(monkeypatch, kind, given):
    """The network is sized on the meta device: refused by its parameters' exact bytes
    (counted here from the same network built for real), not built page by page until the
    kernel's OOM killer stops the process (AnyOrderImputer(width=10**9): ~24 GB granted)."""
    from anyorder.nets import build_net
    spec = {"kind": kind, "width": 16, "depth": 1, **({} if kind == "resmlp" else {"heads": 2})}
    real = sum(p.numel() * p.element_size() for p in build_net(spec, **given).parameters())
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": real - 1)
    with pytest.raises(UserError, match=f"net kind '{kind}' .* needs at least"):
        build_net(spec, **given)
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": real)
    assert sum(p.numel() * p.element_size() for p in build_net(spec, **given).parameters()) == real
