"""Peak tensor memory of one call, the same definition on CPU and CUDA:
bytes resident when the call starts + the highest growth during the call.

* CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (the
  caching allocator's own count of live tensor bytes).
* CPU: torch has no peak counter for its CPU allocator, but with ``profile_memory=True``
  the profiler receives every allocation and free from it, each ``[memory]`` event
  carrying the running "Total Allocated" of the blocks allocated while profiling. The
  peak growth is the highest running total minus the total before the first event;
  the resident part is the bytes of the tensors the caller names (parameters, optimiser
  state, the batch). Only tensor memory is counted, not Python objects or the
  interpreter, which the private and non-private steps share anyway.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable

import torch
from torch.profiler import ProfilerActivity, profile


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    seen: set[int] = set()
    total = 0
    for tensor in tensors:
        if tensor is None:
            continue
        storage = tensor.untyped_storage()
        if storage.data_ptr() in seen:
            continue
        seen.add(storage.data_ptr())
        total += storage.nbytes()
    return total


def peak_bytes(fn: Callable[[], object], *, device: str, resident: Iterable[torch.Tensor]) -> int:
    """Peak tensor bytes while ``fn()`` runs (see the module docstring)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated())
    base = tensor_bytes(resident)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    handle, path = tempfile.mkstemp(suffix=".json")
    os.close(handle)
    try:
        prof.export_chrome_trace(path)
        with open(path) as stream:
            events = json.load(stream)["traceEvents"]
    finally:
        os.unlink(path)
    # Device Type 0 is the CPU.
    memory = sorted(
        (e for e in events
         if e.get("name") == "[memory]" and e.get("args", {}).get("Device Type", 0) == 0),
        key=lambda e: e["ts"],
    )
    if not memory:
        return base
    start = memory[0]["args"]["Total Allocated"] - memory[0]["args"]["Bytes"]
    growth = max(e["args"]["Total Allocated"] for e in memory) - start
    return int(base + max(growth, 0))
