"""Cancellation of long computations: one cancel check, asked between chunks of work.

A caller (the platform's run, a test) installs its ``should_stop`` for a block with
:func:`stop_when`; every long loop of ``ml_core`` calls :func:`check` between its chunks
(the text encoder's batches, the image trunk's batches, gradient-boosting slices, audit
groups and canaries, scoring batches, the columns of the private preprocessing, the noise
search's accountant evaluations), which raises :class:`TrainingCancelled` as soon as
``should_stop()`` says so. The training loop asks its own ``should_stop`` before every
step (:mod:`ml_core.training_loop`). A context variable carries the check, so a loop deep
inside a family needs no extra parameter; outside any block :func:`check` does nothing.

The exception carries the privacy spent so far: what :func:`check` is given, else what the
block recorded with :func:`record_spent` (the run skeleton records the trained model's
report, so a cancel during the audits reports that spend rather than nothing).

A single call into compiled code that has no chunks of its own (scikit-learn's logistic
regression) runs through :func:`call`: in a worker thread, while this thread keeps
checking; a cancel abandons the call (its thread finishes on its own, its result unused).
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from ml_core.spec import StopCheck

__all__ = ["TrainingCancelled", "call", "check", "checked", "record_spent", "requested",
           "stop_when"]

T = TypeVar("T")
# How often :func:`call` asks while its worker thread computes.
POLL_SECONDS = 0.2


class TrainingCancelled(Exception):
    """Raised when the cancel check said stop; carries the privacy spent so far."""

    def __init__(self, privacy: dict | None = None, message: str = "training cancelled") -> None:
        super().__init__(message)
        self.privacy = privacy or {}


@dataclass
class _Scope:
    should_stop: StopCheck
    spent: dict = field(default_factory=dict)


_scope: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar(
    "tessera_cancel_scope", default=None)


@contextlib.contextmanager
def stop_when(should_stop: StopCheck | None) -> Iterator[None]:
    """Within this block, :func:`check` raises :class:`TrainingCancelled` once
    ``should_stop()`` returns True. ``None``, or the check already installed, keeps the
    enclosing block's; another check is asked besides the enclosing one."""
    outer = _scope.get()
    if should_stop is None or (outer is not None and outer.should_stop is should_stop):
        yield
        return

    def either() -> bool:
        return bool(should_stop()) or (outer is not None and bool(outer.should_stop()))

    token = _scope.set(_Scope(either, dict(outer.spent) if outer is not None else {}))
    try:
        yield
    finally:
        _scope.reset(token)


def requested() -> bool:
    """Whether the installed check says stop (False outside any :func:`stop_when` block)."""
    scope = _scope.get()
    return scope is not None and bool(scope.should_stop())


def record_spent(privacy: dict) -> None:
    """What a cancel from now on in this block reports as spent (a training's report)."""
    scope = _scope.get()
    if scope is not None:
        scope.spent = dict(privacy or {})


def check(privacy: dict | None = None) -> None:
    """Raise :class:`TrainingCancelled` when the installed check says stop, carrying
    ``privacy`` (else what :func:`record_spent` recorded) as the spend so far."""
    scope = _scope.get()
    if scope is not None and scope.should_stop():
        raise TrainingCancelled(privacy=privacy if privacy is not None else scope.spent)


def checked(items: Iterable[T], *, privacy: dict | None = None) -> Iterator[T]:
    """``items``, with :func:`check` asked before each one: a loop over it stops before
    the first chunk that starts after the cancel."""
    for item in items:
        check(privacy)
        yield item


def call(function: Callable[[], T], *, poll_s: float = POLL_SECONDS) -> T:
    """``function()``, cancellable while it runs: outside a :func:`stop_when` block a plain
    call; inside one, the call runs in a worker thread while this one asks the check every
    ``poll_s`` seconds. On a cancel :class:`TrainingCancelled` is raised at once and the
    call is abandoned (its thread runs to its own end; nothing reads its result).

    For single calls into compiled code without chunks to check between (a scikit-learn
    fit); work that can be cut into chunks should call :func:`check` between them instead,
    which also stops the work itself."""
    check()
    if _scope.get() is None:
        return function()
    outcome: dict = {}
    done = threading.Event()

    def work() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = exc
        finally:
            done.set()

    worker = threading.Thread(target=contextvars.copy_context().run, args=(work,),
                              name="cancellable-call", daemon=True)
    worker.start()
    while not done.wait(poll_s):
        check()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
