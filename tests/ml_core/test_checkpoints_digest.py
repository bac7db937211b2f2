"""A checkpoint's data fingerprint is the same in every process for the same data, also for
object arrays (privacy-unit ids are often strings), whose raw bytes are memory pointers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from ml_core.checkpoints import inputs_sha256

PROGRAM = ("import numpy as np; from ml_core.checkpoints import inputs_sha256; "
           "print(inputs_sha256([np.array(['m1', 'm2', 'm2'], dtype=object), np.arange(3)]))")


def test_object_arrays_hash_by_value_across_processes():
    here = inputs_sha256([np.array(["m1", "m2", "m2"], dtype=object), np.arange(3)])
    there = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert here == there
    assert here != inputs_sha256([np.array(["m1", "m2", "m3"], dtype=object), np.arange(3)])
