"""Milliseconds per training step of a path run's network (a drawn batch of paths and step
budgets, forward + backward under the run's precision, as `anyorder train` takes it), on this
process's CPU clock (a shared machine), median over --repeats steps after one warm-up.
Weights come from the run (speed does not depend on them); --save / --compare store and check
the loss and gradients of one fixed batch, so a faster forward can be checked against the old.

    python benchmarks/path_training.py --threads 1 runs/text-cpu-path
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from anyorder.build import load_model
from anyorder.precision import autocast_for
from common import add_threads_flag, machine, set_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("--batch", type=int, help="rows per step (default: the run's batch_size)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precision", default=None, help="auto, bf16 or fp32 (default: the run's)")
    parser.add_argument("--save", help="store the loss and gradients of one fixed fp32 batch here")
    parser.add_argument("--compare", help="compare the loss and gradients of that batch with a --save file")
    add_threads_flag(parser)
    args = parser.parse_args()
    set_threads(args.threads)
    model, config, meta = load_model(args.run)
    model.train()
    print(machine(torch.device("cpu")))
    batch = args.batch or config.train.batch_size
    data = torch.randint(0, meta["num_classes"], (batch, meta["dim"]), generator=torch.Generator().manual_seed(1))

    if args.save or args.compare:
        drawn = model.draw_training(batch, torch.Generator().manual_seed(2))
        model.zero_grad()
        loss = model.loss(data, drawn)
        loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        if args.save:
            torch.save({"loss": loss.detach(), "grads": grads}, args.save)
        else:
            ref = torch.load(args.compare)
            worst = max(float((grads[n] - g).abs().max() / g.abs().max().clamp(min=1e-12)) for n, g in ref["grads"].items())
            print(f"fp32 loss {float(loss):.6f} vs {float(ref['loss']):.6f}; largest gradient difference "
                  f"{worst:.2e} of the gradient's largest entry")

    precision = args.precision or config.train.precision
    generator = torch.Generator().manual_seed(0)
    times = []
    for i in range(args.repeats + 1):
        start = time.process_time()
        drawn = model.draw_training(batch, generator)
        with autocast_for(precision, torch.device("cpu")):
            loss = model.loss(data, drawn)
        loss.backward()
        model.zero_grad(set_to_none=True)
        if i:
            times.append(time.process_time() - start)
    print(f"{args.run}: batch {batch}, precision {precision}: {1000 * statistics.median(times):.0f} ms/step "
          f"(median of {args.repeats}; min {1000 * min(times):.0f})", flush=True)


if __name__ == "__main__":
    main()
