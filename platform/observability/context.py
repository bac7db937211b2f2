"""What a log line is about: the request, the training run, the Celery task.

Values live in context variables, so they follow the request or task through every
function it calls without being passed along, and never leak into the next request on a
reused thread (``log_context`` resets them).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

CONTEXT_FIELDS = ("request_id", "run_id", "task_id", "task_name")

_vars: dict[str, contextvars.ContextVar] = {
    name: contextvars.ContextVar(f"tessera_{name}", default=None) for name in CONTEXT_FIELDS
}


def current() -> dict[str, str]:
    """The context fields that are set, as strings."""
    values = {name: var.get() for name, var in _vars.items()}
    return {name: str(value) for name, value in values.items() if value is not None}


def get(name: str):
    return _vars[name].get()


def bind(**values) -> dict[str, contextvars.Token]:
    """Set context fields; returns the tokens ``unbind`` needs to restore the old values."""
    unknown = set(values) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"unknown log context fields {sorted(unknown)}")
    return {name: _vars[name].set(value) for name, value in values.items()}


def unbind(tokens: dict[str, contextvars.Token]) -> None:
    for name, token in tokens.items():
        _vars[name].reset(token)


@contextmanager
def log_context(**values) -> Iterator[None]:
    """Log lines inside the block carry these fields (e.g. ``log_context(run_id=12)``)."""
    tokens = bind(**values)
    try:
        yield
    finally:
        unbind(tokens)
