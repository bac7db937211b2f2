"""``python -m ml_core.native``: build the compiled operators ahead of the first private run."""

import sys
import time

from ml_core import native

started = time.monotonic()
op = native.build()
if op is None:
    print(f"ml_core.native: not built ({native.disabled_reason()}); the Python path will run",
          file=sys.stderr)
else:
    print(f"ml_core.native: ready ({time.monotonic() - started:.1f} s)")
