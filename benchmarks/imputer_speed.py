"""AnyOrderImputer().fit_transform of a 5000 x 20 table with the defaults: the wall time
(target: at most 2 minutes on one thread), its CPU seconds (the training budget counts
the training thread's; the wall time is the CPU time stretched by the machine's load) and the NRMSE of its fills, with the load.

The table: 4 latent factors mixed into 20 columns plus noise, the first five
exponentiated (skewed, positive); 20% of the cells hidden completely at random.

    python benchmarks/imputer_speed.py            # prints the figures; see docs/imputation.md
"""

from __future__ import annotations

import os
import time

import numpy as np

from anyorder import AnyOrderImputer


def main() -> None:
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(5000, 4))
    x = latent @ rng.normal(size=(4, 20)) + 0.5 * rng.normal(size=(5000, 20))
    x[:, :5] = np.exp(x[:, :5] / 2)
    holes = rng.random(x.shape) < 0.2
    X = np.where(holes, np.nan, x)
    before = os.getloadavg()[0]
    started, cpu = time.perf_counter(), time.process_time()
    imputer = AnyOrderImputer(random_state=0)          # defaults: one thread, a 75 s training budget (CPU seconds)
    filled = imputer.fit_transform(X)
    took, cpu = time.perf_counter() - started, time.process_time() - cpu
    nrmse = np.mean([np.sqrt(np.mean((filled[holes[:, j], j] - x[holes[:, j], j]) ** 2)) / x[:, j].std()
                     for j in range(x.shape[1])])
    print(f"fit_transform 5000x20: {took:.1f} s wall, {cpu:.1f} s CPU (fit {imputer.fit_seconds_:.1f} s wall, "
          f"{imputer.n_steps_} steps), "
          f"NRMSE {nrmse:.3f}; load average {before:.1f} before, {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
