"""The synthetic notes and complaints read like real ones: many wordings of the same fact,
pertinent negatives, typing slips; and nothing favours one model by construction (every
seed draws from the same phrase pools)."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from verticals.finance.complaints import complaint_narratives
from verticals.healthcare.demo_data import CONDITIONS, triage_notes
from verticals.synthetic_text import add_typos, join_within, typo

WORD = re.compile(r"[a-z]{3,}")


def _vocabulary(texts) -> set[str]:
    """Words used at least 3 times (a typing slip is a word of its own, used once)."""
    counts = Counter(word for text in texts for word in WORD.findall(text.lower()))
    return {word for word, n in counts.items() if n >= 3}


@pytest.mark.parametrize(("make", "column"), [(triage_notes, "note"),
                                              (complaint_narratives, "narrative")])
def test_texts_are_varied_and_share_one_vocabulary_across_seeds(make, column) -> None:
    first, second = make(2000, 0)[column], make(2000, 1)[column]
    assert first.nunique() > 0.9 * len(first)  # hardly two texts alike
    a, b = _vocabulary(first), _vocabulary(second)
    assert len(a) > 150
    # Same pools, different draws: a seed's words are (nearly all) another seed's words too.
    assert len(a & b) / len(a | b) > 0.9


def test_each_urgency_is_worded_many_ways_with_pertinent_negatives() -> None:
    for level, conditions in CONDITIONS.items():
        assert len(conditions) >= 9
        assert sum(len(wordings) for wordings in conditions) >= 25, level
    frame = triage_notes(3000, 0)
    negated = frame["note"].str.contains(r"\b(?:No|Denies) (?:chest pain|SOB|shortness)",
                                         regex=True)
    assert negated[frame["urgency"] != "emergent"].mean() > 0.05
    # Observation numbers overlap between levels, as real ones do.
    hr = frame["note"].str.extract(r"HR (\d+)")[0].dropna().astype(int)
    levels = frame.loc[hr.index, "urgency"]
    assert hr[levels == "routine"].max() > hr[levels == "urgent"].min()


def test_typos_change_one_letter_and_keep_short_words() -> None:
    rng = np.random.default_rng(0)
    assert typo(rng, "SOB") == "SOB"
    slipped = [typo(rng, "shortness") for _ in range(50)]
    assert any(word != "shortness" for word in slipped)
    assert all(abs(len(word) - len("shortness")) <= 1 for word in slipped)
    text = "patient reports crushing substernal chest pain radiating"
    assert add_typos(rng, text, 0.0) == text


def test_optional_parts_are_dropped_last_first_to_fit() -> None:
    parts = [("45F.", False), ("Chest pain.", False), ("HR 120.", True), ("NKDA.", True)]
    assert join_within(parts, max_chars=100) == "45F. Chest pain. HR 120. NKDA."
    assert join_within(parts, max_chars=24) == "45F. Chest pain. HR 120."
    assert join_within(parts, max_chars=10) == "45F. Chest"
