"""AnyOrderImputer().fit_transform of a 5000 x 20 table with the defaults: the wall time
(target: at most 2 minutes on one thread) and the NRMSE of its fills, with the load.

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
    started = time.perf_counter()
    imputer = AnyOrderImputer(random_state=0)          # defaults: one thread, a 90 s training budget
    filled = imputer.fit_transform(X)
    took = time.perf_counter() - started
    nrmse = np.mean([np.sqrt(np.mean((filled[holes[:, j], j] - x[holes[:, j], j]) ** 2)) / x[:, j].std()
                     for j in range(x.shape[1])])
    print(f"fit_transform 5000x20: {took:.1f} s (fit {imputer.fit_seconds_:.1f} s, {imputer.n_steps_} steps), "
          f"NRMSE {nrmse:.3f}; load average {before:.1f} before, {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
