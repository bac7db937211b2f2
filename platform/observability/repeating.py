"""A daemon thread that calls one function now and then every few seconds until stopped.

Workers use it for what must go on while a solo-pool worker's main thread is busy with a
long training: the heartbeat, a run's lease, the recovery of lost runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import connection

logger = logging.getLogger(__name__)


class RepeatingThread(threading.Thread):
    """Calls ``action()`` at once, then every ``interval_s`` seconds until :meth:`stop`.

    A failing call is logged, never fatal (a database hiccup must not kill a worker). The
    thread's own database connection is closed after each call, so no lock or socket
    lingers between calls.
    """

    def __init__(self, *, name: str, interval_s: float, action: Callable[[], object]) -> None:
        super().__init__(name=name, daemon=True)
        self.interval_s = float(interval_s)
        self.action = action
        self._stopped = threading.Event()

    def run(self) -> None:
        while True:
            try:
                self.action()
            except Exception:  # noqa: BLE001 - logged; the next call tries again
                logger.warning("%s: call failed", self.name, exc_info=True)
            finally:
                connection.close()
            if self._stopped.wait(self.interval_s):
                return

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)
