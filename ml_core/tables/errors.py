"""The refusal every reading step raises: a stable code for programs, a message for people."""

from __future__ import annotations


class TableReadError(ValueError):
    """A table that cannot be read; ``code`` is stable, ``message`` is for people, and
    ``column`` and ``rows`` (1-based data rows) say where, when one place is at fault."""

    def __init__(self, code: str, message: str, *, column: str | None = None,
                 rows: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.column = column
        self.rows = rows

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "column": self.column,
                "rows": list(self.rows)}
