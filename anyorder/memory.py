"""Sizes checked against the memory there is, before anything is allocated.

An absurd size (`train.batch_size=100000000`, `sample --num 20000000`) would otherwise
surface as an allocator error deep inside torch, or as the kernel's OOM killer. The
callers estimate a lower bound of what they will hold at once (e.g. the head's
parameters for every variable of a batch), so a refusal is always right; what passes the
check may still not fit, and then the allocator's error is caught where it happens
(`is_out_of_memory`) and reported as a one-line error naming the option to lower.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import UserError

GiB = 2 ** 30


def _read_number(path: str) -> int | None:
    try:
        text = Path(path).read_text().split()[0]
    except (OSError, IndexError):
        return None
    return int(text) if text.isdigit() else None


def available_bytes(device: torch.device | str = "cpu") -> int:
    """Bytes a new allocation can take on `device`: a CUDA device's free memory; on the
    CPU, Linux's MemAvailable, within this process's cgroup limit where there is one
    (elsewhere: the physical memory)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit, used = _read_number("/sys/fs/cgroup/memory.max"), _read_number("/sys/fs/cgroup/memory.current")
    if limit is not None and used is not None:
        available = min(available, max(0, limit - used))
    return available


def check_fits(needed: int, what: str, device: torch.device | str = "cpu") -> None:
    """Refuse `what` (naming the option, e.g. "train.batch_size 10000000") when it needs at
    least `needed` bytes and `device` has fewer available."""
    free = available_bytes(device)
    if needed > free:
        raise UserError(f"{what} needs at least {needed / GiB:.1f} GiB of memory at once; "
                        f"{torch.device(device).type} has {free / GiB:.1f} GiB available: lower it")


def is_out_of_memory(err: BaseException) -> bool:
    """Whether `err` is an allocator's refusal (CUDA's OutOfMemoryError, the CPU allocator's
    RuntimeError), as opposed to any other failure."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "DefaultCPUAllocator: can't allocate memory" in str(err)
