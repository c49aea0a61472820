"""What every benchmark needs: a line naming the machine, and a fair timer."""

from __future__ import annotations

import os
import platform
import statistics
import time

import torch


def add_threads_flag(parser) -> None:
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice). "
                        "On a shared machine, 1 can be far faster than oversubscribed OpenMP threads.")


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def resolve(device: str) -> torch.device:
    """'auto' -> cuda where there is one, else cpu."""
    return torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                        "cpu" if device == "auto" else device)


def machine(device: torch.device) -> str:
    """CPU model, cores, load (other jobs share the machine), torch version and device, on one line."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return (f"machine: {cpu}, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads), "
            f"load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}, device {device} ({where})")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def add_clock_flag(parser) -> None:
    parser.add_argument("--clock", choices=CLOCKS, default="wall",
                        help="wall time (default), or this process's CPU time: with --threads 1 on a CPU "
                             "shared with other jobs, it leaves out the time they held the core")


def median_seconds(fn, device: torch.device, repeats: int, warmup: int = 1, clock: str = "wall") -> float:
    """Median time of `fn()` on `clock` (see CLOCKS) over `repeats` calls after `warmup` untimed ones."""
    now = CLOCKS[clock]
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = now()
        fn()
        sync(device)
        times.append(now() - start)
    return statistics.median(times)
