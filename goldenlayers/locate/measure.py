"""Wall time and peak memory of a block of work, on any device.

On CUDA the allocator's own peak counter is exact. On CPU there is no such counter, so a background
thread samples every few milliseconds the bytes the C heap has handed out (glibc ``mallinfo2``, which
torch's CPU tensors come from); the figure is the peak above the level at the start, a close lower
bound (a peak shorter than the sampling interval can be missed). Without glibc the resident set size
(``/proc/self/statm``) stands in; it also counts freed memory the allocator keeps, so it reads high.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass
class Measurement:
    seconds: float = 0.0
    peak_memory_bytes: int | None = None  # above the level at the start; None where unmeasurable


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _glibc_mallinfo2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        function = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    function.restype = _MallInfo2
    return function


_MALLINFO2 = _glibc_mallinfo2()


def _heap_bytes() -> int | None:
    """Bytes in use on the C heap (small blocks plus mmapped large ones)."""
    info = _MALLINFO2()
    return info.uordblks + info.hblkhd


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _cpu_bytes() -> int | None:
    return _heap_bytes() if _MALLINFO2 is not None else _rss_bytes()


class _Sampler(threading.Thread):
    def __init__(self, interval: float):
        super().__init__(daemon=True)
        self.interval, self.peak = interval, _cpu_bytes() or 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            self.peak = max(self.peak, _cpu_bytes() or 0)


@contextmanager
def measure(device: torch.device | str, interval: float = 0.005) -> Iterator[Measurement]:
    """``with measure(handle.device) as m: ...`` then ``m.seconds``, ``m.peak_memory_bytes``."""
    device = torch.device(device)
    result = Measurement()
    start = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        try:
            yield result
        finally:
            torch.cuda.synchronize(device)
            result.seconds = time.perf_counter() - start
            result.peak_memory_bytes = torch.cuda.max_memory_allocated(device) - base
        return
    base = _cpu_bytes()
    sampler = _Sampler(interval)
    sampler.start()
    try:
        yield result
    finally:
        sampler.done.set()
        sampler.join()
        result.seconds = time.perf_counter() - start
        end = _cpu_bytes()
        if base is not None and end is not None:
            result.peak_memory_bytes = max(sampler.peak, end) - base
