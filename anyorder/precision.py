"""Which precision a run computes in: bf16 autocast where the hardware multiplies bf16 natively.

`precision: auto` asks the hardware rather than guessing from the device type. A GPU
multiplies bf16 natively from compute capability 8.0 (Ampere) on. A CPU does when its
matmul library has bf16 kernels for it (AVX512-BF16 or AMX on x86, BF16 on Arm);
elsewhere torch falls back to a generic kernel that runs ~50x slower than fp32. A short
timed probe tells the two apart, once per process and device. Autocast only changes the
network's matmuls and convolutions: heads and samplers cast to float32 themselves.
"""

from __future__ import annotations

import functools
import time
from contextlib import nullcontext

import torch

from .config import ConfigError

PRECISIONS = ("auto", "bf16", "fp32")
PROBE_SIZE = 256        # n of the probe's n×n matmuls: ~1 ms in fp32 on one core
PROBE_REPEATS = 5
NATIVE_SPEEDUP = 1.5    # bf16 must beat fp32 by this factor to be worth autocasting


def _best_seconds(fns, repeats: int) -> list[float]:
    """Best CPU time of each function after one warm-up call, timed in turns: CPU time leaves
    out the time other jobs hold the cores, and turns spread any other slowdown over all."""
    best = [float("inf")] * len(fns)
    for round in range(repeats + 1):
        for i, fn in enumerate(fns):
            start = time.process_time()
            fn()
            if round:
                best[i] = min(best[i], time.process_time() - start)
    return best


@functools.lru_cache(maxsize=None)
def _cpu_bf16_native(onednn: bool) -> bool:
    """The probe, on one thread whatever torch's setting: the kernel is chosen per
    instruction set, not per thread count, and with more threads the CPU time counts
    OpenMP workers spinning while other jobs hold the cores (on a busy 2-core machine that
    took fp32 from 0.5 to 10 ms, within 1.5x of the generic bf16 kernel)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a32, b32 = torch.randn(2, PROBE_SIZE, PROBE_SIZE, generator=torch.Generator().manual_seed(0))
        a16, b16 = a32.bfloat16(), b32.bfloat16()
        fp32, bf16 = _best_seconds([lambda: a32 @ b32, lambda: a16 @ b16], PROBE_REPEATS)
    finally:
        torch.set_num_threads(threads)
    return bf16 * NATIVE_SPEEDUP <= fp32


def bf16_native(device: torch.device | str) -> bool:
    """Whether `device` multiplies bf16 natively (much faster than fp32), cached per device.

    CUDA: compute capability >= 8.0. CPU: a bf16 256x256 matmul (best of 5, one thread)
    beats fp32 by 1.5x at the current oneDNN setting (native kernels: 2-4x faster; the
    generic fallback: ~20-50x slower). Other device types: False.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        return _cpu_bf16_native(torch.backends.mkldnn.enabled)
    return False


def autocast_for(precision: str, device: torch.device):
    """A bf16 autocast context where asked for ('bf16') or where 'auto' finds native bf16
    (`bf16_native`); a no-op context for 'fp32' or where bf16 would be slower."""
    if precision not in PRECISIONS:
        raise ConfigError(f"train.precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    use = precision == "bf16" or (precision == "auto" and bf16_native(device))
    return torch.autocast(device.type, dtype=torch.bfloat16) if use else nullcontext()
