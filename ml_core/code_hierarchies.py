"""Public hierarchies of codes, and hashing: encodings of wide categorical columns that
learn no vocabulary from the data.

A diagnosis column holds hundreds of codes, most seen a handful of times: one-hot over
the levels seen in training is wide, sparse and, under differential privacy, a leak (the
list of levels is computed from private rows). Two encodings need nothing from the data:

- **Declared hierarchies.** ICD-9-CM groups codes into published chapters (``390-459``
  circulatory, ``V`` supplementary, ``E`` external causes) and three-character categories
  (``250`` diabetes for ``250.83`` and ``25083``); postcodes group by their leading
  characters (``021`` for ``02139``, ``L9G`` for ``L9G2B``). The chapters are a fixed public
  list; the other levels are hashed.
- **Hashing.** A level goes to bucket ``crc32(column|level) mod n``: the same bucket for
  the same text in every run and on every machine, whatever rows were seen.

A vertical declares which of its columns follow which hierarchy
(:class:`ml_core.spec.CodeHierarchy`); the suggested mapping names them, and the analyst
confirms or changes that (``ColumnMapping.hierarchies``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

ICD9 = "icd9"
POSTCODE = "postcode"
HIERARCHY_KINDS = (ICD9, POSTCODE)

# ICD-9-CM chapters of numeric codes: (first three-digit category, last, name). Public.
ICD9_CHAPTERS = (
    (1, 139, "infectious"), (140, 239, "neoplasms"), (240, 279, "endocrine"),
    (280, 289, "blood"), (290, 319, "mental"), (320, 389, "nervous"),
    (390, 459, "circulatory"), (460, 519, "respiratory"), (520, 579, "digestive"),
    (580, 629, "genitourinary"), (630, 679, "pregnancy"), (680, 709, "skin"),
    (710, 739, "musculoskeletal"), (740, 759, "congenital"), (760, 779, "perinatal"),
    (780, 799, "symptoms"), (800, 999, "injury"),
)
ICD9_CHAPTER_NAMES = (*(name for _, _, name in ICD9_CHAPTERS), "supplementary_v",
                      "external_e", "unknown")
# Buckets for a hashed level: wide enough that a few hundred codes rarely share one, narrow
# enough that DP-SGD's noise is spread over few weights.
HASH_BUCKETS = 32


def _clean(code: object) -> str:
    text = str(code).strip().upper()
    return text[:-2] if text.endswith(".0") else text


def icd9_category(code: object) -> str:
    """The three-character category of an ICD-9-CM diagnosis code: ``250`` for ``250.83``
    and ``25083``, ``V57`` for ``V57.1``, ``E849`` for ``E849.7`` (E codes keep four)."""
    text = _clean(code).replace(".", "")
    if text.startswith("E"):
        return text[:4]
    if text.startswith("V"):
        return text[:3]
    digits = text.split(".")[0]
    # Codes written as numbers lose their leading zeros (38 for 038): pad to three.
    return digits[:3] if len(digits) >= 3 else digits.zfill(3)


def icd9_chapter(code: object) -> str:
    """The ICD-9-CM chapter name of a diagnosis code (``unknown`` for anything else)."""
    category = icd9_category(code)
    if category.startswith("V"):
        return "supplementary_v"
    if category.startswith("E"):
        return "external_e"
    try:
        number = int(category)
    except ValueError:
        return "unknown"
    for first, last, name in ICD9_CHAPTERS:
        if first <= number <= last:
            return name
    return "unknown"


def postcode_prefix(code: object, length: int = 3) -> str:
    """The first ``length`` letters and digits of a postcode, upper case (``021``, ``L9G``)."""
    text = "".join(ch for ch in _clean(code) if ch.isalnum())
    return text[:length]


def hash_bucket(column: str, level: str, buckets: int = HASH_BUCKETS) -> int:
    """The bucket of ``level`` in ``column``: crc32, stable across runs and machines
    (Python's own ``hash`` of a string changes with every process)."""
    return zlib.crc32(f"{column}|{level}".encode()) % buckets


# Hierarchy kind -> the grouped levels of one code: (name, fixed level list or None, function).
# A fixed list is one-hot over it; None means hashed.
GROUPINGS: dict[str, tuple[tuple[str, tuple[str, ...] | None, Callable[[object], str]], ...]] = {
    ICD9: (("chapter", ICD9_CHAPTER_NAMES, icd9_chapter), ("category", None, icd9_category)),
    POSTCODE: (("prefix1", None, lambda code: postcode_prefix(code, 1)),
               ("prefix3", None, lambda code: postcode_prefix(code, 3))),
}


def grouped_features(
    *, column: str, levels: list[str], codes: np.ndarray, hierarchy: str | None,
    buckets: int = HASH_BUCKETS,
) -> tuple[list[str], np.ndarray]:
    """Feature names and a (features, rows) 0/1 matrix for one wide categorical column.

    ``levels`` are the column's distinct texts and ``codes`` each row's index into them
    (``-1`` for missing: a row of zeros). The full level is always hashed; a declared
    ``hierarchy`` adds its groups (fixed lists one-hot, the rest hashed). Each function
    runs once per distinct level.
    """
    blocks: list[tuple[str, tuple[str, ...] | None, Callable[[object], str]]] = []
    if hierarchy is not None:
        blocks.extend(GROUPINGS[hierarchy])
    blocks.append(("code", None, lambda code: str(code)))
    names: list[str] = []
    rows = []
    present = codes >= 0
    for block, fixed, group in blocks:
        grouped = [group(level) for level in levels]
        if fixed is not None:
            index = {name: i for i, name in enumerate(fixed)}
            width = len(fixed)
            position = np.array([index.get(g, width - 1) for g in grouped] or [0], dtype=np.int64)
            names += [f"{column}:{block}={name}" for name in fixed]
        else:
            width = buckets
            position = np.array([hash_bucket(f"{column}:{block}", g, buckets) for g in grouped]
                                or [0], dtype=np.int64)
            names += [f"{column}:{block}#{b}" for b in range(buckets)]
        matrix = np.zeros((width, len(codes)), dtype=np.float32)
        where = position[np.where(present, codes, 0)]
        matrix[where[present], np.flatnonzero(present)] = 1.0
        rows.append(matrix)
    return names, np.concatenate(rows, axis=0)
