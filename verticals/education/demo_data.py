"""Synthetic education data with planted, documented disparities.

Two tables, shaped like what schools and tutoring platforms export:

``tutor_responses(n_rows, seed)``: one row per answer in an online tutor
---------------------------------------------------------------------------
Columns: ``student_id``, ``sex`` (F/M, half each), ``frl`` (free or reduced-price lunch
eligibility, "yes" for 35 % of students: a socio-economic marker), ``skill``, ``attempt``
(1, 2, ... per student), ``correct`` (0/1). Rows are grouped by student in attempt order.

The learner model is Bayesian Knowledge Tracing with prerequisites. Eight arithmetic skills
form a prerequisite graph (:data:`PREREQUISITES`: addition needs counting, division needs
multiplication and subtraction, percentages need decimals and multiplication, ...). Each
student has an ability ``a ~ N(0, 1)``. For every skill the student starts mastered with
probability ``sigmoid(logit(P_INIT[skill]) + 1.5 a)`` and, after each practice, learns it with
probability ``sigmoid(logit(P_LEARN[skill]) + 0.5 a)``; both are cut to 30 % while a
prerequisite is not mastered yet. An answer is correct with probability ``1 - SLIP[skill]``
when the skill is mastered, ``GUESS[skill]`` when not. The tutor picks the next skill like
a mastery-based curriculum: the first skill (in curriculum order) whose prerequisites the
student has passed (three correct answers in a row) and which is not passed yet, or, one
time in five, a random unlocked skill for review. So the data carry per-skill difficulty
(what the per-skill baseline learns), per-student ability and learning over time (what a
sequence model can learn on top).

The planted disparity (limited connectivity): FRL students

* get fewer practice opportunities: their session lengths are drawn around
  ``FRL_PRACTICE_SHARE`` = 50 % of the others' (about 7 versus 14 answers), and
* have ``FRL_TIMEOUT_RATE`` = 15 % of their correct answers recorded as incorrect (the tutor
  times out on a slow connection and logs a wrong answer).

Both make FRL students' recorded answers less predictable from their history: a knowledge
tracing model's AUC is lower for the ``frl = yes`` group, which the fairness audit (AUC by
student group) reports. ``sex`` carries no planted effect. Measured on 20,000 rows (seed 0)
with the non-private model, 10 epochs: test AUC 0.75 overall (per-skill baseline 0.62),
0.79 for ``frl = no`` and 0.64 for ``frl = yes``; 0.76 and 0.75 for girls and boys.

``student_outcomes(n_rows, seed)``: one row per student, like UCI student-por.csv
-------------------------------------------------------------------------------
The 33 columns of the UCI Student Performance data (school, sex, age, address, ... , G1,
G2, G3; see student.txt). A latent performance ``z ~ N(0, 1)`` drives study time, past
failures, wish for higher education, absences and alcohol use (the features); the period
grades are ``12.2 + 2.6 z`` plus the features' effects plus noise, G1 and G2 being earlier
noisy readings of the same performance (which is why they leak G3 and are excluded), and
about 2 % of students drop out with G3 = 0. Pass means ``G3 >= 10``.

The planted disparity (grading bias): students with a rural home ``address`` ("R", 30 %)
get final grades ``RURAL_GRADE_PENALTY`` = 2.5 points lower at the same performance (G1
and G2 are not penalised). The address itself is audited, not used as a feature, but travel
time (about 3.1 for rural against 1.5 for urban students, on UCI's 1-4 scale) is a proxy
for it: a model learns part of the penalty and flags rural students more often, which the
audit shows as a selection-rate gap. Measured on 200,000 rows (seed 0): pass rate 0.73;
failure rate 0.42 for rural and 0.20 for urban students, against 0.203 and 0.200 without
the penalty (``RURAL_GRADE_PENALTY = 0``): the gap is planted. G1 and G2 correlate 0.74
and 0.78 with G3.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SKILLS = ("counting", "addition", "subtraction", "multiplication", "division", "fractions",
          "decimals", "percentages")
PREREQUISITES: dict[str, tuple[str, ...]] = {
    "counting": (),
    "addition": ("counting",),
    "subtraction": ("addition",),
    "multiplication": ("addition",),
    "division": ("multiplication", "subtraction"),
    "fractions": ("division",),
    "decimals": ("fractions",),
    "percentages": ("decimals", "multiplication"),
}
P_INIT = dict(zip(SKILLS, (0.85, 0.6, 0.45, 0.35, 0.25, 0.2, 0.2, 0.15), strict=True))
P_LEARN = dict(zip(SKILLS, (0.4, 0.3, 0.25, 0.2, 0.18, 0.15, 0.15, 0.12), strict=True))
GUESS = dict(zip(SKILLS, (0.25, 0.2, 0.15, 0.15, 0.1, 0.1, 0.1, 0.08), strict=True))
SLIP = dict(zip(SKILLS, (0.04, 0.06, 0.08, 0.08, 0.1, 0.1, 0.1, 0.1), strict=True))
# A prerequisite not mastered yet cuts the chances of knowing or learning a skill to this share.
MISSING_PREREQUISITE_FACTOR = 0.3
PASS_STREAK = 3
REVIEW_SHARE = 0.2
MEAN_PRACTICE = 14
# Log-odds of already knowing a skill per standard deviation of ability.
ABILITY_EFFECT = 1.5
FRL_SHARE = 0.35
FRL_PRACTICE_SHARE = 0.5
FRL_TIMEOUT_RATE = 0.15

RURAL_SHARE = 0.30
RURAL_GRADE_PENALTY = 2.5
PASS_GRADE = 10

RESPONSE_COLUMNS = ("student_id", "sex", "frl", "skill", "attempt", "correct")


def _sigmoid(x: float) -> float:
    return float(1 / (1 + np.exp(-x)))


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def _next_skill(rng: np.random.Generator, passed: set[str]) -> str:
    unlocked = [s for s in SKILLS if all(p in passed for p in PREREQUISITES[s])]
    open_skills = [s for s in unlocked if s not in passed]
    if not open_skills or rng.random() < REVIEW_SHARE:
        return unlocked[int(rng.integers(len(unlocked)))]
    return open_skills[0]


def _simulate_student(
    rng: np.random.Generator, *, ability: float, n_answers: int, frl: bool
) -> list[tuple[str, int]]:
    mastered: set[str] = set()
    for skill in SKILLS:  # curriculum order: prerequisites are decided first
        ready = all(p in mastered for p in PREREQUISITES[skill])
        p_known = _sigmoid(_logit(P_INIT[skill]) + ABILITY_EFFECT * ability)
        if rng.random() < p_known * (1 if ready else MISSING_PREREQUISITE_FACTOR):
            mastered.add(skill)
    passed: set[str] = set()
    streak: dict[str, int] = {}
    answers = []
    for _ in range(n_answers):
        skill = _next_skill(rng, passed)
        p_correct = 1 - SLIP[skill] if skill in mastered else GUESS[skill]
        correct = int(rng.random() < p_correct)
        streak[skill] = streak.get(skill, 0) + 1 if correct else 0
        if streak[skill] >= PASS_STREAK:
            passed.add(skill)
        recorded = correct
        if frl and correct and rng.random() < FRL_TIMEOUT_RATE:
            recorded = 0  # planted: a timeout on a slow connection is logged as wrong
        answers.append((skill, recorded))
        if skill not in mastered:
            ready = all(p in mastered for p in PREREQUISITES[skill])
            p_learn = _sigmoid(_logit(P_LEARN[skill]) + 0.5 * ability)
            if rng.random() < p_learn * (1 if ready else MISSING_PREREQUISITE_FACTOR):
                mastered.add(skill)
    return answers


def tutor_responses(n_rows: int, seed: int) -> pd.DataFrame:
    """``n_rows`` answers of simulated students (see the module docstring); the last
    student's history is cut to make the count exact."""
    rng = np.random.default_rng(seed)
    rows: list[tuple] = []
    student = 0
    while len(rows) < n_rows:
        student += 1
        frl = rng.random() < FRL_SHARE
        sex = "F" if rng.random() < 0.5 else "M"
        mean = MEAN_PRACTICE * (FRL_PRACTICE_SHARE if frl else 1.0)
        n_answers = max(2, int(rng.poisson(mean)))
        answers = _simulate_student(rng, ability=float(rng.normal()), n_answers=n_answers,
                                    frl=frl)
        for attempt, (skill, correct) in enumerate(answers, start=1):
            rows.append((f"S{student:05d}", sex, "yes" if frl else "no", skill, attempt,
                         correct))
    return pd.DataFrame(rows[:n_rows], columns=list(RESPONSE_COLUMNS))


def student_outcomes(n_rows: int, seed: int) -> pd.DataFrame:
    """``n_rows`` students with the columns of UCI student-por.csv (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n = n_rows
    z = rng.normal(size=n)
    rural = rng.random(n) < RURAL_SHARE
    school = np.where(rng.random(n) < 0.65, "GP", "MS")
    sex = np.where(rng.random(n) < 0.59, "F", "M")
    age = np.clip(np.round(16.7 + 1.2 * rng.normal(size=n) - 0.3 * z), 15, 22).astype(int)
    medu = np.clip(np.round(2.5 + 0.5 * z + rng.normal(scale=1.0, size=n) - 0.4 * rural),
                   0, 4).astype(int)
    fedu = np.clip(np.round(0.6 * medu + 0.8 + rng.normal(scale=0.9, size=n)), 0, 4).astype(int)
    traveltime = np.clip(np.round(1.2 + 1.4 * rural + rng.exponential(0.4, size=n)),
                         1, 4).astype(int)
    studytime = np.clip(np.round(1.9 + 0.5 * z + 0.3 * (sex == "F")
                                 + rng.normal(scale=0.7, size=n)), 1, 4).astype(int)
    failures = np.clip(np.round(rng.exponential(0.25, size=n) * np.exp(-1.2 * z)
                                - 0.2), 0, 3).astype(int)
    higher = np.where(rng.random(n) < 1 / (1 + np.exp(-(2.6 + 1.3 * z))), "yes", "no")
    absences = np.clip(np.round(rng.exponential(3.5, size=n) * np.exp(-0.3 * z)), 0, 32
                       ).astype(int)
    dalc = np.clip(np.round(1.3 - 0.3 * z + 0.4 * (sex == "M")
                            + rng.exponential(0.4, size=n)), 1, 5).astype(int)
    walc = np.clip(dalc + np.round(rng.exponential(0.9, size=n)), 1, 5).astype(int)

    def pick(options: tuple[str, ...], shares: tuple[float, ...]) -> np.ndarray:
        return rng.choice(options, size=n, p=shares)

    performance = (12.2 + 2.6 * z + 0.4 * (studytime - 2) - 1.0 * failures
                   + 0.7 * (higher == "yes") - 0.3 * (dalc - 1) - 0.03 * absences
                   + 0.5 * (school == "GP"))

    def grade(noise: float, penalty: np.ndarray) -> np.ndarray:
        return np.clip(np.round(performance - penalty + rng.normal(scale=noise, size=n)),
                       0, 20).astype(int)

    no_penalty = np.zeros(n)
    g1 = grade(1.6, no_penalty)
    g2 = grade(1.2, no_penalty)
    g3 = grade(1.0, RURAL_GRADE_PENALTY * rural)
    dropped_out = rng.random(n) < 0.02
    g3 = np.where(dropped_out, 0, g3)

    return pd.DataFrame({
        "school": school,
        "sex": sex,
        "age": age,
        "address": np.where(rural, "R", "U"),
        "famsize": pick(("GT3", "LE3"), (0.7, 0.3)),
        "Pstatus": pick(("T", "A"), (0.88, 0.12)),
        "Medu": medu,
        "Fedu": fedu,
        "Mjob": pick(("other", "services", "at_home", "teacher", "health"),
                     (0.4, 0.21, 0.21, 0.11, 0.07)),
        "Fjob": pick(("other", "services", "at_home", "teacher", "health"),
                     (0.56, 0.28, 0.06, 0.06, 0.04)),
        "reason": pick(("course", "home", "reputation", "other"), (0.44, 0.23, 0.22, 0.11)),
        "guardian": pick(("mother", "father", "other"), (0.7, 0.24, 0.06)),
        "traveltime": traveltime,
        "studytime": studytime,
        "failures": failures,
        "schoolsup": pick(("no", "yes"), (0.9, 0.1)),
        "famsup": pick(("yes", "no"), (0.61, 0.39)),
        "paid": pick(("no", "yes"), (0.94, 0.06)),
        "activities": pick(("no", "yes"), (0.51, 0.49)),
        "nursery": pick(("yes", "no"), (0.8, 0.2)),
        "higher": higher,
        "internet": np.where(rng.random(n) < np.where(rural, 0.6, 0.83), "yes", "no"),
        "romantic": pick(("no", "yes"), (0.63, 0.37)),
        "famrel": np.clip(np.round(4 + rng.normal(scale=0.9, size=n)), 1, 5).astype(int),
        "freetime": np.clip(np.round(3.2 + rng.normal(scale=1.0, size=n)), 1, 5).astype(int),
        "goout": np.clip(np.round(3.2 + rng.normal(scale=1.1, size=n)), 1, 5).astype(int),
        "Dalc": dalc,
        "Walc": walc,
        "health": np.clip(np.round(3.5 + rng.normal(scale=1.4, size=n)), 1, 5).astype(int),
        "absences": absences,
        "G1": g1,
        "G2": g2,
        "G3": g3,
    })
