"""Building blocks for the verticals' synthetic free text (triage notes, complaints).

Real notes and complaints are written by many people: the same fact comes in many words
(lay terms, jargon, abbreviations), with pertinent negatives ("no chest pain") and typing
slips. The sample generators draw every part of a text from such variants, so a text
model has to generalise over wording rather than look up a handful of fixed sentences.
"""

from __future__ import annotations

import numpy as np

KEYBOARD_NEIGHBOURS = {
    "a": "sq", "b": "vn", "c": "xv", "d": "sf", "e": "wr", "f": "dg", "g": "fh", "h": "gj",
    "i": "uo", "j": "hk", "k": "jl", "l": "k", "m": "n", "n": "bm", "o": "ip", "p": "o",
    "r": "et", "s": "ad", "t": "ry", "u": "yi", "v": "cb", "w": "qe", "y": "tu",
}


def pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    """One of ``options``, uniformly."""
    return str(options[int(rng.integers(len(options)))])


def typo(rng: np.random.Generator, word: str) -> str:
    """``word`` with one slip: two letters swapped, one dropped or doubled, or a key's
    neighbour hit instead (only letters inside the word; short words are left alone)."""
    letters = [i for i, ch in enumerate(word) if ch.isalpha()]
    if len(letters) < 4:
        return word
    at = letters[int(rng.integers(1, len(letters) - 1))]
    kind = int(rng.integers(4))
    if kind == 0 and at + 1 < len(word) and word[at + 1].isalpha():
        return word[:at] + word[at + 1] + word[at] + word[at + 2:]
    if kind == 1:
        return word[:at] + word[at + 1:]
    if kind == 2:
        return word[:at] + word[at] + word[at:]
    near = KEYBOARD_NEIGHBOURS.get(word[at].lower())
    if not near:
        return word
    return word[:at] + near[int(rng.integers(len(near)))] + word[at + 1:]


def add_typos(rng: np.random.Generator, text: str, rate: float) -> str:
    """Each word gets a slip with probability ``rate``."""
    words = text.split(" ")
    return " ".join(typo(rng, word) if rng.random() < rate else word for word in words)


def join_within(parts: list[tuple[str, bool]], *, max_chars: int) -> str:
    """Join the (text, optional) ``parts`` with spaces, in order; optional ones are dropped,
    last first, until the text fits in ``max_chars``."""
    kept = [(text, optional) for text, optional in parts if text]
    while len(" ".join(text for text, _ in kept)) > max_chars:
        optional_at = [i for i, (_, optional) in enumerate(kept) if optional]
        if not optional_at:
            break
        kept.pop(optional_at[-1])
    return " ".join(text for text, _ in kept)[:max_chars].rstrip()
