"""Synthetic hospital data with planted, documented disparities: encounters and triage notes.

Encounters (``encounters``) — readmission risk
------------------------------------------------
One row per inpatient discharge: ``encounter_id``, ``age`` (18-95), ``sex``, ``race``,
``insurance`` (medicare, medicaid, private, self_pay), ``primary_diagnosis``,
``emergency_admission``, ``length_of_stay`` (days), ``prior_admissions`` (last 12 months),
``n_medications``, ``n_diagnoses``, ``hba1c`` (missing for ~55 %: only measured when
ordered), ``discharge_disposition`` (home, home_health, skilled_nursing, left_ama) and the
outcome ``readmitted`` ("yes" within 30 days, about 20 %).

Insurance follows age (65+: mostly Medicare) and, below 65, race (Black and Hispanic
patients are on Medicaid more often), as in US hospital data. The clinical risk is a
logistic model of the clinical columns only (:func:`clinical_log_odds`): prior
admissions, length of stay, medications, diagnoses, heart failure / COPD, high HbA1c,
emergency admission, skilled-nursing discharge and leaving against medical advice.

The planted disparity: patients on Medicaid or without insurance are readmitted more
often *at the same clinical risk* (``PLANTED_ACCESS_LOG_ODDS = 0.8``: weaker access to
follow-up care after discharge). Insurance and race are sensitive and never features, but
the model sees proxies (prior admissions and ``left_ama`` are more frequent for those
patients), so the audit shows higher selection rates for medicaid/self_pay and, through
the insurance mix, for Black and Hispanic patients.

Notes (``triage_notes``) — note triage
--------------------------------------
One row per emergency-department note: ``note_id``, ``note`` (free text from templates
with realistic clinical vocabulary and abbreviations), ``sex``, ``age`` and the nurse's
recorded ``urgency``: emergent (~25 %), urgent (~40 %) or routine (~35 %). Each note
combines a presenting complaint typical of its true urgency, vital signs that fit it,
history and filler phrases; 5 % of labels are flipped to a neighbouring level (triage is
noisy).

The planted disparity: women's emergent cardiac presentations are more often described
with atypical symptoms (fatigue, nausea, jaw or back discomfort: 60 % of them vs 15 % for
men), and 25 % of women's truly emergent notes are recorded as "urgent"
(``PLANTED_UNDER_TRIAGE``: the documented under-triage of women with acute coronary
syndromes). The labels for women are therefore noisier and partly biased: the audit shows a
lower accuracy and macro F1 for women, and the model reproduces the under-triage it learnt.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PLANTED_ACCESS_LOG_ODDS = 0.8
PLANTED_UNDER_TRIAGE = 0.25
LABEL_NOISE = 0.05

RACES = ("white", "black", "hispanic", "asian", "other")
RACE_SHARES = (0.60, 0.17, 0.13, 0.06, 0.04)
DIAGNOSES = ("heart_failure", "copd", "diabetes", "pneumonia", "sepsis", "other")
DIAGNOSIS_SHARES = (0.15, 0.12, 0.13, 0.15, 0.10, 0.35)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def clinical_log_odds(frame: pd.DataFrame) -> np.ndarray:
    """The readmission log-odds from the clinical columns alone (no planted term)."""
    hba1c_high = frame["hba1c"].fillna(0).to_numpy() > 8.0
    return (
        -3.7
        + 0.45 * np.minimum(frame["prior_admissions"].to_numpy(), 5)
        + 0.08 * np.minimum(frame["length_of_stay"].to_numpy(), 20)
        + 0.04 * frame["n_medications"].to_numpy()
        + 0.05 * frame["n_diagnoses"].to_numpy()
        + 0.6 * (frame["primary_diagnosis"] == "heart_failure").to_numpy()
        + 0.4 * (frame["primary_diagnosis"] == "copd").to_numpy()
        + 0.4 * hba1c_high
        + 0.3 * (frame["emergency_admission"] == "yes").to_numpy()
        + 0.5 * (frame["discharge_disposition"] == "skilled_nursing").to_numpy()
        + 0.9 * (frame["discharge_disposition"] == "left_ama").to_numpy()
    )


def encounters(n_rows: int, seed: int, *, planted_access_log_odds: float = PLANTED_ACCESS_LOG_ODDS
               ) -> pd.DataFrame:
    """``n_rows`` synthetic discharges (see the module docstring); seeded."""
    rng = np.random.default_rng(seed)
    age = np.clip(rng.gamma(9.0, 7.0, n_rows) + 5, 18, 95).round().astype(int)
    sex = rng.choice(["female", "male"], n_rows, p=[0.52, 0.48])
    race = rng.choice(RACES, n_rows, p=RACE_SHARES)
    minority = np.isin(race, ["black", "hispanic"])
    draw = rng.random(n_rows)
    medicaid_share = np.where(minority, 0.40, 0.15)
    uninsured_share = np.where(minority, 0.12, 0.06)
    young = np.where(draw < medicaid_share, "medicaid",
                     np.where(draw < medicaid_share + uninsured_share, "self_pay", "private"))
    old = np.where(draw < 0.85, "medicare", np.where(draw < 0.93, "private", "medicaid"))
    insurance = np.where(age >= 65, old, young)
    low_access = np.isin(insurance, ["medicaid", "self_pay"])
    diagnosis = rng.choice(DIAGNOSES, n_rows, p=DIAGNOSIS_SHARES)
    emergency = np.where(rng.random(n_rows) < 0.55 + 0.15 * low_access, "yes", "no")
    # Proxies: fewer outpatient visits means more prior admissions and more AMA discharges.
    prior = rng.poisson(0.5 + 0.012 * (age - 18) + 0.6 * low_access)
    stay = np.maximum(1, rng.poisson(3.0 + 0.03 * (age - 18) + 1.5 * (diagnosis == "sepsis")))
    medications = rng.poisson(8 + 0.08 * (age - 18))
    diagnoses_count = np.clip(rng.poisson(5 + 0.04 * (age - 18)), 1, 16)
    measured = (diagnosis == "diabetes") | (rng.random(n_rows) < 0.35)
    hba1c = np.where(measured, np.round(rng.normal(6.2 + 1.4 * (diagnosis == "diabetes"), 1.1,
                                                   n_rows), 1), np.nan)
    ama = rng.random(n_rows) < 0.02 + 0.05 * low_access
    nursing = rng.random(n_rows) < np.clip(0.02 + 0.006 * (age - 50), 0.02, 0.35)
    home_health = rng.random(n_rows) < 0.18
    disposition = np.where(ama, "left_ama", np.where(nursing, "skilled_nursing",
                                                     np.where(home_health, "home_health", "home")))
    frame = pd.DataFrame({
        "encounter_id": [f"E{seed:03d}-{i:06d}" for i in range(n_rows)],
        "age": age, "sex": sex, "race": race, "insurance": insurance,
        "primary_diagnosis": diagnosis, "emergency_admission": emergency,
        "length_of_stay": stay, "prior_admissions": prior, "n_medications": medications,
        "n_diagnoses": diagnoses_count, "hba1c": hba1c, "discharge_disposition": disposition,
    })
    log_odds = clinical_log_odds(frame) + planted_access_log_odds * low_access
    frame["readmitted"] = np.where(rng.random(n_rows) < _sigmoid(log_odds), "yes", "no")
    return frame


# --- triage notes ------------------------------------------------------------------------------

LEVELS = ("emergent", "urgent", "routine")
LEVEL_SHARES = (0.25, 0.40, 0.35)
COMPLAINTS = {
    "emergent": (
        "crushing substernal chest pain radiating to the left arm",
        "sudden onset worst headache of life with neck stiffness",
        "acute shortness of breath, unable to speak in full sentences",
        "left sided facial droop and slurred speech since 40 min",
        "hematemesis with melena, lightheaded on standing",
        "unresponsive after fall, GCS 8",
        "anaphylaxis after bee sting, lip and tongue swelling, stridor",
        "active seizure lasting over 5 minutes",
        "penetrating stab wound to the abdomen",
    ),
    "urgent": (
        "abdominal pain RLQ for 12 hours with nausea",
        "fever 39.2 and productive cough for 3 days",
        "closed forearm deformity after fall on outstretched hand",
        "laceration to scalp, bleeding controlled with pressure",
        "kidney stone type flank pain, colicky, vomiting",
        "asthma exacerbation, wheeze, improving with nebuliser",
        "new onset confusion in elderly patient with UTI symptoms",
        "syncope at home, now alert and oriented",
        "cellulitis of the lower leg with spreading erythema",
    ),
    "routine": (
        "medication refill request, no acute complaints",
        "mild sore throat for 2 days, tolerating fluids",
        "chronic low back pain, unchanged from baseline",
        "itchy rash on forearm for one week",
        "suture removal, wound healing well",
        "ear pain, afebrile, eating and drinking normally",
        "sprained ankle, weight bearing with mild limp",
        "follow up of blood pressure, asymptomatic",
        "cold symptoms, runny nose and mild cough",
    ),
}
ATYPICAL_CARDIAC = (
    "fatigue and nausea since this morning with vague jaw discomfort",
    "upper back pain and indigestion, feels unwell, clammy",
    "epigastric discomfort and shortness of breath on exertion, tired",
)
VITALS = {
    "emergent": ("HR 128, BP 82/50, SpO2 88% RA", "HR 45, BP 210/120", "RR 32, SpO2 85%",
                 "BP 78/40, cap refill delayed"),
    "urgent": ("HR 104, BP 138/86, T 38.6", "HR 96, BP 150/92, SpO2 95%",
               "T 38.9, HR 110", "BP 142/88, pain 7/10"),
    "routine": ("HR 76, BP 122/78, afebrile", "vitals within normal limits",
                "HR 68, SpO2 99% RA", "BP 128/82, pain 2/10"),
}
HISTORY = ("PMH HTN, T2DM", "no significant PMH", "PMH COPD, ex-smoker", "hx of CAD, on aspirin",
           "on warfarin for AF", "NKDA", "lives alone", "PMH asthma")
OPENERS = ("Pt presents with", "Patient c/o", "Brought in by EMS with", "Walk-in, reports",
           "Triage note:", "Presenting complaint:")


def _note(rng: np.random.Generator, level: str, *, sex: str, age: int, atypical: bool) -> str:
    complaint = (rng.choice(ATYPICAL_CARDIAC) if atypical
                 else rng.choice(COMPLAINTS[level]))
    letter = "F" if sex == "female" else "M"
    parts = [f"{age}{letter}.", str(rng.choice(OPENERS)), f"{complaint}."]
    parts.append(f"{rng.choice(VITALS[level])}.")
    if rng.random() < 0.6:
        parts.append(f"{rng.choice(HISTORY)}.")
    return " ".join(parts)


def triage_notes(n_rows: int, seed: int, *, planted_under_triage: float = PLANTED_UNDER_TRIAGE
                 ) -> pd.DataFrame:
    """``n_rows`` synthetic triage notes with recorded urgency (see the module docstring)."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(["female", "male"], n_rows, p=[0.5, 0.5])
    age = np.clip(rng.normal(48, 20, n_rows), 18, 95).round().astype(int)
    true_level = rng.choice(LEVELS, n_rows, p=LEVEL_SHARES)
    female = sex == "female"
    cardiac = (true_level == "emergent") & (rng.random(n_rows) < 0.4)
    atypical = cardiac & (rng.random(n_rows) < np.where(female, 0.60, 0.15))
    notes = [_note(rng, level, sex=s, age=int(a), atypical=bool(at))
             for level, s, a, at in zip(true_level, sex, age, atypical, strict=True)]
    recorded = true_level.astype(object).copy()
    under = female & (true_level == "emergent") & (rng.random(n_rows) < planted_under_triage)
    recorded[under] = "urgent"
    noise = rng.random(n_rows) < LABEL_NOISE
    neighbour = {"emergent": "urgent", "urgent": "routine", "routine": "urgent"}
    recorded[noise] = [neighbour[level] for level in recorded[noise]]
    return pd.DataFrame({
        "note_id": [f"N{seed:03d}-{i:06d}" for i in range(n_rows)],
        "note": notes, "sex": sex, "age": age, "urgency": recorded,
    })
