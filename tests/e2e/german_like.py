"""A table shaped like the UCI Statlog german.data file, made on the spot.

german.data is space-separated with no header: 20 attributes, coded categories such as
``A11`` and plain numbers, and the outcome in column 21 (1 = good, 2 = bad credit). The
rows here are random but the outcome depends on the checking account and the duration,
so a model has something to learn; about 30 % are bad, as in the real file.
"""

from __future__ import annotations

import numpy as np

# (first code, number of codes) for each coded column, by 1-based column number.
CODED_COLUMNS = {
    1: ("A11", 4), 3: ("A30", 5), 4: ("A40", 10), 6: ("A61", 5), 7: ("A71", 5),
    9: ("A91", 5), 10: ("A101", 3), 12: ("A121", 4), 14: ("A141", 3), 15: ("A151", 3),
    17: ("A171", 4), 19: ("A191", 2), 20: ("A201", 2),
}


def _codes(first: str, count: int) -> list[str]:
    prefix, start = first[0], int(first[1:])
    return [f"{prefix}{start + i}" for i in range(count)]


def german_like_rows(n_rows: int = 600, seed: int = 0) -> bytes:
    """``n_rows`` lines of 21 space-separated values, german.data style, as bytes."""
    rng = np.random.default_rng(seed)
    columns: dict[int, np.ndarray] = {}
    for number, (first, count) in CODED_COLUMNS.items():
        columns[number] = rng.choice(_codes(first, count), size=n_rows)
    columns[2] = rng.integers(4, 73, size=n_rows)            # duration in months
    columns[5] = rng.integers(250, 18_425, size=n_rows)      # credit amount
    columns[8] = rng.integers(1, 5, size=n_rows)             # instalment rate
    columns[11] = rng.integers(1, 5, size=n_rows)            # present residence since
    columns[13] = rng.integers(19, 76, size=n_rows)          # age in years
    columns[16] = rng.integers(1, 5, size=n_rows)            # existing credits
    columns[18] = rng.integers(1, 3, size=n_rows)            # people liable
    risk = (
        1.4 * (columns[1] == "A11") + 0.7 * (columns[1] == "A12")
        - 1.0 * (columns[1] == "A14") + 0.03 * (columns[2] - 20) - 1.6
    )
    bad = rng.random(n_rows) < 1 / (1 + np.exp(-risk))
    columns[21] = np.where(bad, 2, 1)
    lines = (" ".join(str(columns[c][i]) for c in range(1, 22)) for i in range(n_rows))
    return ("\n".join(lines) + "\n").encode("ascii")
