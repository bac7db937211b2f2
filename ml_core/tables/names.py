"""Column names: invisible characters removed, names mixing alphabets noted, duplicates and
look-alike names (``age`` and Cyrillic ``аge``) refused, blank names repaired."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

import pandas as pd

from ml_core.tables.errors import TableReadError

# Characters that change how text is shown without being seen: bidi embeddings, overrides
# and isolates, zero-width spaces and joiners, the BOM, soft hyphens. No name needs them.
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def _clean_name(value: object) -> str:
    return _INVISIBLE.sub("", str(value)).strip()


def _clean_names(values: list, notes: list[str]) -> list[str]:
    """Header cells as column names, without invisible characters (noted, with any name
    mixing alphabets, which is how look-alike names are made)."""
    names = []
    for position, value in enumerate(values, start=1):
        raw = str(value)
        name = _clean_name(raw)
        hidden = sorted({f"U+{ord(c):04X}" for c in _INVISIBLE.findall(raw)} - {"U+FEFF"})
        if hidden:
            notes.append(f"Column {position} ('{name}'): removed invisible characters "
                         f"({', '.join(hidden)}) from its name.")
        scripts = name_scripts(name)
        if len(scripts) > 1:
            notes.append(f"Column {position} ('{name}') mixes alphabets in its name "
                         f"({', '.join(scripts)}): check it is the column you mean.")
        names.append(name)
    return names


def name_scripts(name: str) -> list[str]:
    """The alphabets of the letters of ``name`` (LATIN, CYRILLIC, GREEK, ...), sorted."""
    scripts = set()
    for char in name:
        if char.isalpha():
            scripts.add(unicodedata.name(char, "UNKNOWN").split(" ")[0])
    return sorted(scripts)


# Letters of other alphabets drawn like Latin ones: enough to catch look-alike names.
_CONFUSABLES = str.maketrans({
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d", "ӏ": "l", "ԛ": "q",
    "ԝ": "w", "ɡ": "g", "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "γ": "y", "ı": "i", "ℓ": "l",
})


def name_skeleton(name: str) -> str:
    """What a name looks like: NFKC, case-folded, other alphabets' look-alike letters
    replaced by Latin ones. Two different names with one skeleton are a spoof or a typo."""
    folded = unicodedata.normalize("NFKC", _INVISIBLE.sub("", name)).casefold()
    return folded.translate(_CONFUSABLES)


def name_words(name: str) -> set[str]:
    """Lower-case words of a column name: 'Product ID' and 'ProductId' -> {'product', 'id'}."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(name))
    return {word for word in re.split(r"[^a-zA-Z0-9]+", spaced.lower()) if word}


def _refuse_duplicates(names: list[str]) -> None:
    duplicates = sorted(name for name, n in Counter(names).items() if n > 1 and name)
    if duplicates:
        raise TableReadError(
            "duplicate_columns",
            "Column names must be unique; repeated: " + "; ".join(
                f"'{d}' (columns {_positions(names, lambda n, d=d: n == d)})"
                for d in duplicates), column=duplicates[0],
        )
    skeletons = Counter(name_skeleton(name) for name in names if name)
    lookalikes = [key for key, n in skeletons.items() if n > 1]
    if lookalikes:
        groups = []
        for key in lookalikes:
            same = [n for n in names if n and name_skeleton(n) == key]
            spelled = " and ".join(f"'{n}' ({_spell(n)})" for n in same)
            where = _positions(names, lambda n, key=key: bool(n) and name_skeleton(n) == key)
            groups.append(f"{spelled}, columns {where}")
        first = next(n for n in names if n and name_skeleton(n) == lookalikes[0])
        raise TableReadError(
            "duplicate_columns",
            "Column names must be unique, and these only look different: " + "; ".join(groups)
            + ". Rename them so they differ in plain letters.", column=first,
        )


def _positions(names: list[str], matches) -> str:
    return " and ".join(str(k) for k, name in enumerate(names, start=1) if matches(name))


def _spell(name: str) -> str:
    """The letters of ``name`` outside plain ASCII, named (for look-alike reports)."""
    odd = [f"'{c}' {unicodedata.name(c, hex(ord(c)))}" for c in dict.fromkeys(name)
           if ord(c) > 127]
    return "with " + ", ".join(odd) if odd else "plain letters"


def _repair_blank_names(frame: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    keep, names = [], []
    for k, name in enumerate(frame.columns, start=1):
        if not name:
            if frame.iloc[:, k - 1].isna().all():
                # A trailing separator on every line: an empty column, not data.
                notes.append(f"Dropped column {k}: no name and no values.")
                continue
            name = f"column_{k}"
            notes.append(f"Column {k} has no name; called it '{name}'.")
        keep.append(k - 1)
        names.append(name)
    _refuse_duplicates(names)  # 'column_2' may already be taken
    repaired = frame.iloc[:, keep]
    repaired.columns = names
    return repaired
