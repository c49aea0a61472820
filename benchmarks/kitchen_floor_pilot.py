"""Pilot: do the kitchen's clipped actions collapse mixture components onto the log-scale floor?

Trains MAC (`ConditionalPolicy`) and the mixture density (`MixtureDensityPolicy`) at lr 3e-3
with 3 components on the recorded kitchen demonstrations (runs/kitchen/demonstrations.csv,
written by benchmarks/kitchen.py), once per floor given, and prints per action column, on
1000 validation rows, the mixture weight on components within 0.25 of the floor (for cells
clipped to +-1 and the others) and the smallest log-scale (standardised units). MAC's
components are read at the natural-order sampling node (the state and the earlier action
dimensions given).

    python benchmarks/kitchen_floor_pilot.py 1500 -7 -4.6    # ~3 min at load 6
"""
import sys
import time
import numpy as np, torch
sys.path.insert(0, "benchmarks")
import kitchen as K
from anyorder.control import ConditionalPolicy, MixtureDensityPolicy, fit
from anyorder.data.tables import load_table
torch.set_num_threads(1)
steps = int(sys.argv[1]); floors = [float(f) for f in sys.argv[2:]]
data = load_table("runs/kitchen/demonstrations.csv", valid_fraction=0.05, test_fraction=0.0, seed=0,
                  numeric=K.STATE_COLUMNS + K.JOINTS)
S, A = 22, 9
valid = data.splits["valid"][:1000]
std = torch.as_tensor(data.meta["std"], dtype=torch.float32); mean = torch.as_tensor(data.meta["mean"], dtype=torch.float32)
act_units = valid[:, S:] * std[S:] + mean[S:]
clipped = (act_units.abs() > 1 - 1e-6)
for floor in floors:
    for cls in (ConditionalPolicy, MixtureDensityPolicy):
        torch.manual_seed(0)
        pol = cls.for_table(data, S, width=256, depth=3, components=3, min_log_scale=floor)
        t = time.perf_counter()
        losses = fit(pol, data, steps=steps, batch_size=256, lr=3e-3, seed=0, progress=False)
        with torch.no_grad():
            if cls is ConditionalPolicy:
                head = pol.model.head
                rows = []
                for j in range(A):      # natural-order sampling node: state + actions before j
                    obs = torch.zeros(len(valid), S + A, dtype=torch.bool); obs[:, :S + j] = True
                    params = pol.model(valid, obs)[:, S + j]
                    log_w, mu, ls = head.mixture(params.unsqueeze(1))
                    rows.append((log_w[:, 0], ls[:, 0]))
                log_w = torch.stack([r[0] for r in rows], 1); ls = torch.stack([r[1] for r in rows], 1)  # [B, A, K]
                nll = -pol.log_prob(valid[:, :S] * std[:S] + mean[:S], act_units).mean() / A
            else:
                lw, means, ls = pol.mixture(valid)
                log_w = lw.unsqueeze(1).expand(-1, A, -1)
                nll = -pol.log_prob(valid[:, :S] * std[:S] + mean[:S], act_units).mean() / A
            near = ls < floor + 0.25               # a component within 0.25 of the floor
            w = log_w.exp()
            mass = (w * near).sum(-1)              # weight on components at the floor, per (row, dim)
            print(f"floor {floor:g} {cls.__name__:22s} {steps} steps {time.perf_counter() - t:.0f}s  final loss {np.mean(losses[-100:]):.3f} "
                  f"valid NLL/dim (table units) {nll:.3f}", flush=True)
            for j, name in enumerate(K.JOINTS):
                c = clipped[:, j]
                print(f"   {name:8s} weight at floor: clipped cells {mass[c, j].mean().item() if c.any() else float('nan'):.2f} "
                      f"(n={int(c.sum())}), others {mass[~c, j].mean().item():.2f}; min log-scale {ls[:, j].min().item():.2f}")
