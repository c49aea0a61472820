"""Run under `torchrun --nproc_per_node=N`: one data-parallel training as the trainer runs it.

Writes, per rank, the gradient of the first step after DDP's all-reduce (`grad<rank>.pt`)
and the weights after `train.steps` optimiser steps (`weights<rank>.pt`), so a test can
compare them with the single-process gradient and with the other ranks.
Usage: python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_worker.py OUT override...
"""

import gc
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from anyorder.config import load_config
from anyorder.train import Training, training_batch


def main(out: str, *overrides: str) -> None:
    out = Path(out)
    run = Training(load_config("text-cpu", [*overrides, f"train.out={out / 'run'}"]))
    (out / "run").mkdir(parents=True, exist_ok=True)
    run.start(out / "run", resume=False)
    probe = torch.Generator().manual_seed(run.config.train.seed)
    x, drawn = training_batch(run.data, run.model, run.config.train.batch_size, probe)
    run.objective(run._local(x), run._local(drawn)).backward()
    torch.save({name: p.grad.detach().clone() for name, p in run.model.named_parameters() if p.grad is not None},
               out / f"grad{run.rank}.pt")
    run.optimizer.zero_grad(set_to_none=True)
    while run.step < run.config.train.steps:
        run.one_step()
    torch.save({k: v.detach().clone() for k, v in run.model.state_dict().items()}, out / f"weights{run.rank}.pt")
    del run                         # DDP's reducer (held in reference cycles) freed while the interpreter
    gc.collect()                    # is whole: freed at its teardown it aborted 1 run in ~30 under load
    dist.barrier()                  # no process leaves while another still talks to it
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
