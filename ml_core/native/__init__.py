"""Compiled helpers of the model core, built from source on this machine.

Two C++ operators today (``flat_clip.cpp``): ``torch.ops.tessera.flat_clipped_sums``, the
book-keeping clipped sum of 2-D Linear layers, and ``torch.ops.tessera.noisy_mean_``, the
step's Gaussian noise added to those sums and their division by the expected batch size;
bit for bit the Python path's arithmetic without its per-operation Python cost (a small
model's private step on the CPU is mostly that cost). They are compiled with PyTorch's own
extension builder (a C++ compiler and ninja, no download) the first time they are asked for,
or ahead of time by ``python -m ml_core.native`` (``make install`` does), into PyTorch's
extension cache (``TORCH_EXTENSIONS_DIR``, else ``~/.cache/torch_extensions``), one folder
per source and PyTorch version; a finished build is loaded as it is (no compiler needed to
run, so an image can ship one built at its build time). Where they
cannot be built (no compiler, a read-only cache), :func:`flat_clipped_sums` and
:func:`noisy_mean` answer None, the reason is logged once and the Python path runs: same
numbers, slower steps. ``TESSERA_NATIVE=0`` turns them off.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("flat_clip.cpp")
# IEEE operations exactly as written: no contraction of a * b + c into a fused multiply-add
# where the Python path's kernels round twice.
CFLAGS = ("-O2", "-ffp-contract=off")

# A build takes about 11 s; a lock older than this belongs to a build that died.
STALE_LOCK_SECONDS = 300

_lock = threading.Lock()
_state: dict[str, object] = {}


NAME = "tessera_native"


def _build_directory() -> Path:
    """One folder per source, flags and PyTorch version (an extension is tied to the ABI it
    was compiled with): a finished build there is loaded as it is, without a compiler."""
    from torch.utils import cpp_extension

    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(CFLAGS).encode()
                         + torch.__version__.encode()).hexdigest()[:16]
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()
    return Path(root) / f"{NAME}_{key}"


def clear_stale_lock(directory: Path) -> bool:
    """Remove the build lock of a build that died (PyTorch's builder waits for another
    process's lock file without end, and a build killed half-way, by a cancelled or killed
    worker, leaves it behind); whether there was one."""
    lock = directory / "lock"
    try:
        if time.time() - lock.stat().st_mtime <= STALE_LOCK_SECONDS:
            return False
        lock.unlink()
    except FileNotFoundError:
        return False
    logger.warning("removed a stale build lock (%s)", lock)
    return True


def _load() -> None:
    directory = _build_directory()
    library = directory / f"{NAME}.so"
    if library.is_file():
        try:
            torch.ops.load_library(str(library))
            return
        except OSError:  # a build being written by another process: wait for it below
            pass
    from torch.utils import cpp_extension

    directory.mkdir(parents=True, exist_ok=True)
    clear_stale_lock(directory)
    cpp_extension.load(name=NAME, sources=[str(SOURCE)], extra_cflags=list(CFLAGS),
                       build_directory=str(directory), is_python_module=False,
                       verbose=False)


def disabled_reason() -> str | None:
    """Why the compiled path is off (None: it is on, or has not been tried yet)."""
    if os.environ.get("TESSERA_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return "TESSERA_NATIVE=0"
    reason = _state.get("failed")
    return str(reason) if reason else None


def build() -> Callable | None:
    """Compile (or load the cached build of) the operators; the clipped-sum operator, or
    None with the reason logged once."""
    reason = disabled_reason()
    if reason:
        return None
    with _lock:
        op = _state.get("op")
        if op is not None or _state.get("failed"):
            return op  # type: ignore[return-value]
        try:
            _load()
            op = torch.ops.tessera.flat_clipped_sums
        except Exception as error:  # noqa: BLE001 - any build failure means: Python path
            message = f"{type(error).__name__}: {str(error).strip().splitlines()[-1:]}"
            _state["failed"] = f"the compiled clipped sum could not be built ({message})"
            logger.warning("%s; the Python path runs (same numbers, slower small steps)",
                           _state["failed"])
            return None
        _state["op"], _state["noise"] = op, torch.ops.tessera.noisy_mean_
        return op


def noisy_mean() -> Callable | None:
    """``torch.ops.tessera.noisy_mean_``, built on first use; None where it cannot be."""
    op = _state.get("noise")
    if op is not None:
        return op  # type: ignore[return-value]
    return _state.get("noise") if build() is not None else None


def flat_clipped_sums() -> Callable | None:
    """``torch.ops.tessera.flat_clipped_sums``, built on first use; None where it cannot be."""
    op = _state.get("op")
    if op is not None:
        return op  # type: ignore[return-value]
    return build()
