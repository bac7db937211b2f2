"""The registry of verticals, filled by each vertical's AppConfig.ready()."""

from __future__ import annotations

from verticals.base import Problem, Vertical

_VERTICALS: dict[str, Vertical] = {}


class RegistryError(LookupError):
    pass


def register(vertical: Vertical) -> None:
    """Register ``vertical``; registering the same object twice is a no-op."""
    existing = _VERTICALS.get(vertical.key)
    if existing is not None and existing is not vertical:
        raise RegistryError(f"vertical {vertical.key!r} is already registered")
    keys = [p.key for p in vertical.problems]
    if len(set(keys)) != len(keys):
        raise RegistryError(f"vertical {vertical.key!r} declares a problem key twice")
    _VERTICALS[vertical.key] = vertical


def verticals() -> list[Vertical]:
    return sorted(_VERTICALS.values(), key=lambda v: v.name)


def get_vertical(key: str) -> Vertical:
    try:
        return _VERTICALS[key]
    except KeyError:
        raise RegistryError(f"no vertical {key!r}; known: {sorted(_VERTICALS)}") from None


def get_problem(vertical_key: str, problem_key: str) -> Problem:
    try:
        return get_vertical(vertical_key).problem(problem_key)
    except KeyError as exc:
        raise RegistryError(str(exc)) from None


def all_problems() -> list[tuple[Vertical, Problem]]:
    return [(v, p) for v in verticals() for p in v.problems]
