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
One row per emergency-department note: ``note_id``, ``note`` (free text, at most 300
characters), ``sex``, ``age`` and the nurse's recorded ``urgency``: emergent (~25 %), urgent
(~40 %) or routine (~35 %). Each note combines the patient (age and sex, in several
formats), a presenting complaint typical of its true urgency (a condition from
``CONDITIONS``, in one of its wordings: jargon, abbreviations or lay words), sometimes a
duration, observations (numbers in shared formats, drawn from ranges that fit the level but
overlap, or a few words), pertinent negatives ("No chest pain.", "Denies SOB.") in some
non-emergent notes, appearance and history; ~3 % of words carry a typing slip. 5 % of
labels are flipped to a neighbouring level (triage is noisy).

The planted disparity: women's emergent cardiac presentations are more often described
with atypical symptoms (fatigue, nausea, jaw or back discomfort: 60 % of them vs 15 % for
men), and 25 % of women's truly emergent notes are recorded as "urgent"
(``PLANTED_UNDER_TRIAGE``: the documented under-triage of women with acute coronary
syndromes). The labels for women are therefore noisier and partly biased: the audit shows a
lower accuracy and macro F1 for women, and the model reproduces the under-triage it learnt.

What a model can learn, and what no model can: the urgency is carried by the complaint
(33 conditions in 2 to 6 wordings each, 109 in all, so a few hundred notes leave many wordings
unseen in training), the appearance words and the observations' ranges; the patient line,
opener, duration and history are drawn alike for every level, and the pertinent negatives
("Denies chest pain.") put emergent words into non-emergent notes. Knowing each note's true
level, the recorded labels still give a macro F1 of only about 0.92 (label noise and the
planted under-triage): the ceiling for any model. On 300 notes a sentence encoder's edge
over TF-IDF comes from wordings it never saw in training; with a few thousand notes most
wordings are seen and both approach the ceiling.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from verticals.synthetic_text import add_typos, join_within, pick

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
TYPO_RATE = 0.03
NOTE_MAX_CHARS = 300
# Presenting complaints by true urgency: each condition is a tuple of ways nurses, EMS
# crews and patients put the same thing (jargon, abbreviations, lay words).
CONDITIONS = {
    "emergent": (
        ("crushing substernal chest pain radiating to the left arm",
         "central chest pressure radiating to the jaw, diaphoretic",
         "severe retrosternal CP with sweating", "heavy chest pain going down L arm",
         "chest tightness like a weight on the chest, grey and sweaty",
         "ongoing chest pain, STEMI on EMS ECG"),
        ("left sided facial droop and slurred speech", "sudden R arm and leg weakness, "
         "word finding difficulty", "acute aphasia with right hemiparesis",
         "face drooping, cannot lift left arm, speech garbled",
         "stroke symptoms, last known well 40 min ago"),
        ("sudden onset worst headache of life with neck stiffness",
         "thunderclap headache then vomiting, photophobia",
         "explosive occipital headache and collapsed at the gym"),
        ("acute shortness of breath, unable to speak in full sentences",
         "severe resp distress, using accessory muscles", "gasping for air, lips blue",
         "can barely breathe, tripoding, cyanosed", "acute dyspnoea, speaking single words"),
        ("vomiting bright red blood, black tarry stools", "large volume haematemesis, "
         "dizzy on standing", "coffee ground vomit and melaena, very pale",
         "hematemesis with melena, lightheaded"),
        ("unresponsive after fall, GCS 8", "found down at home, barely rousable",
         "head injury with LOC, now drowsy, GCS 10", "high speed MVC, trapped, altered LOC"),
        ("anaphylaxis after bee sting, lip and tongue swelling, stridor",
         "throat closing after eating peanuts, hives, wheeze",
         "face swelling up and struggling to breathe after new antibiotic"),
        ("active seizure lasting over 5 minutes", "status epilepticus, still fitting on arrival",
         "repeated seizures without waking in between"),
        ("penetrating stab wound to the abdomen", "GSW to chest",
         "deep thigh laceration with pulsatile bleeding", "knife wound to the neck"),
        ("rigors and new confusion, mottled skin, septic looking",
         "febrile, hypotensive and drowsy, ?sepsis", "suspected septic shock, cold peripheries"),
        ("intentional overdose of tricyclics, drowsy", "took a bottle of pills an hour ago, "
         "now hard to wake"),
    ),
    "urgent": (
        ("abdominal pain RLQ for 12 hours with nausea", "periumbilical pain moving to the "
         "right lower quadrant, off food", "right sided tummy pain, worse walking, low grade "
         "temp", "lower abdo pain, guarding on the right"),
        ("fever 39.2 and productive cough for 3 days", "cough with green sputum, febrile, "
         "pleuritic pain", "chest infection, breathless on exertion, temp",
         "?pneumonia, coughing up yellow phlegm"),
        ("closed forearm deformity after fall on outstretched hand", "swollen painful wrist "
         "after a fall, obvious deformity", "fell onto hip, cannot weight bear, leg shortened",
         "suspected #NOF after trip at home"),
        ("laceration to scalp, bleeding controlled with pressure", "deep cut to hand from a "
         "kitchen knife, bleeding controlled", "gash on the shin needing stitches"),
        ("kidney stone type flank pain, colicky, vomiting", "severe loin to groin pain, "
         "blood in urine", "renal colic, writhing, known stones"),
        ("asthma exacerbation, wheeze, improving with nebuliser", "wheezy and tight chested, "
         "talking in sentences", "asthma flare, inhaler not helping much"),
        ("new onset confusion in elderly patient with UTI symptoms", "more muddled than usual "
         "per daughter, burning urine", "acute confusion, smelly urine, ?UTI"),
        ("syncope at home, now alert and oriented", "fainted in the queue, back to baseline",
         "collapse with brief LOC, recovered fully"),
        ("cellulitis of the lower leg with spreading erythema", "hot swollen red leg, "
         "redness tracking up", "infected looking foot wound, spreading redness"),
        ("migraine not settling with usual meds, vomiting", "bad headache for 2 days, "
         "vomiting, known migraineur"),
        ("fever, flank pain and dysuria", "pyelonephritis symptoms, rigors at home",
         "burning when passing urine with loin pain and temperature"),
        ("high blood sugars and vomiting, thirsty", "diabetic, BMs in the 20s, feeling rough"),
    ),
    "routine": (
        ("medication refill request, no acute complaints", "ran out of blood pressure "
         "tablets, wants a script", "needs repeat prescription, feels well"),
        ("mild sore throat for 2 days, tolerating fluids", "scratchy throat and runny nose",
         "sore throat, swallowing ok, eating normally"),
        ("chronic low back pain, unchanged from baseline", "usual back ache, no red flags",
         "long standing lower back pain, same as always"),
        ("itchy rash on forearm for one week", "dry itchy patch on the arm, eczema flare",
         "spotty rash, not spreading, otherwise well"),
        ("suture removal, wound healing well", "here for dressing change", "stitches out, "
         "wound looks clean"),
        ("ear pain, afebrile, eating and drinking normally", "blocked ear feeling, ?wax",
         "mild earache since yesterday"),
        ("sprained ankle, weight bearing with mild limp", "twisted knee playing football, "
         "walking ok", "rolled ankle, mild swelling, able to walk"),
        ("follow up of blood pressure, asymptomatic", "BP check requested by GP",
         "wants blood test results explained"),
        ("cold symptoms, runny nose and mild cough", "blocked nose and sneezing for 3 days",
         "mild flu like symptoms, managing at home"),
        ("insect bite with mild local swelling", "splinter in finger", "small graze on knee "
         "from a fall, clean"),
    ),
}
# Atypical presentations of an acute coronary syndrome (more often in women).
ATYPICAL_CARDIAC = (
    "fatigue and nausea since this morning with vague jaw discomfort",
    "upper back pain and indigestion, feels unwell, clammy",
    "epigastric discomfort and shortness of breath on exertion, tired",
    "unusual exhaustion, lightheaded, some heaviness in the arms",
    "indigestion that will not settle, sweaty and sick",
)
APPEARANCE = {
    "emergent": ("Looks unwell.", "Pale and sweaty.", "Distressed.", "Peri-arrest.",
                 "Appears very unwell, family at bedside.", ""),
    "urgent": ("In moderate pain.", "Uncomfortable but talking.", "Looks tired.", "", ""),
    "routine": ("Appears comfortable.", "Well looking.", "Ambulated to triage.", "NAD.", "", ""),
}
PERTINENT_NEGATIVES = ("No chest pain.", "Denies chest pain.", "No SOB.", "Denies shortness of "
                       "breath.", "No fever.", "No head injury.", "No LOC.", "No vomiting.",
                       "Not on blood thinners.", "No neuro deficit.")
HISTORY = ("PMH HTN, T2DM.", "No significant PMH.", "PMH COPD, ex-smoker.",
           "Hx of CAD, on aspirin.", "On warfarin for AF.", "NKDA.", "Lives alone.",
           "PMH asthma.", "Allergic to penicillin.", "Hx depression.", "Type 1 diabetic.",
           "Previous stents 2019.")
OPENERS = ("Pt presents with", "Patient c/o", "Brought in by EMS with", "Walk-in, reports",
           "Triage note:", "Presenting complaint:", "BIBA with", "Self presented with",
           "Referred by GP with", "PC:", "")
DURATIONS = ("since this morning", "for 2 days", "x 3/7", "onset 1 h ago", "since last night",
             "for a week", "")


# Observations by true urgency: (heart rate, systolic BP, SpO2, temperature x 10) ranges.
# They overlap between levels, as real observations do; the words around them do not.
VITAL_RANGES = {
    "emergent": ((48, 150), (70, 210), (80, 97), (355, 395)),
    "urgent": ((80, 122), (105, 170), (91, 99), (366, 396)),
    "routine": ((58, 98), (105, 145), (95, 100), (361, 377)),
}
VITAL_FORMATS = ("HR {hr}, BP {sbp}/{dbp}", "HR {hr} BP {sbp}/{dbp} SpO2 {sat}%",
                 "obs: P {hr}, BP {sbp}/{dbp}, sats {sat}% RA, T {temp}",
                 "BP {sbp}/{dbp}, pulse {hr}", "SpO2 {sat}% on air, HR {hr}",
                 "T {temp}, HR {hr}, RR {rr}", "vitals HR {hr}, BP {sbp}/{dbp}, T {temp}")
VITAL_WORDS = {
    "emergent": ("tachycardic and hypotensive", "sats dropping", "BP barely recordable",
                 "cap refill delayed"),
    "urgent": ("febrile, mildly tachy", "obs otherwise stable", "borderline sats"),
    "routine": ("obs stable", "VSS, afebrile", "vitals within normal limits"),
}


def _vitals(rng: np.random.Generator, level: str) -> str:
    """Observations: numbers in one of several shared formats, drawn from ranges that fit
    ``level`` (and overlap), or a few words."""
    if rng.random() < 0.25:
        return pick(rng, VITAL_WORDS[level])
    (hr_low, hr_high), (bp_low, bp_high), (sat_low, sat_high), (t_low, t_high) = (
        VITAL_RANGES[level])
    sbp = int(rng.integers(bp_low, bp_high + 1))
    values = {"hr": int(rng.integers(hr_low, hr_high + 1)), "sbp": sbp,
              "dbp": int(sbp * rng.uniform(0.55, 0.7)),
              "sat": int(rng.integers(sat_low, sat_high + 1)),
              "temp": f"{int(rng.integers(t_low, t_high + 1)) / 10:.1f}",
              "rr": int(rng.integers(14, 34 if level == "emergent" else 24))}
    return pick(rng, VITAL_FORMATS).format(**values)


def _patient(rng: np.random.Generator, sex: str, age: int) -> str:
    female = sex == "female"
    return pick(rng, (
        f"{age}{'F' if female else 'M'}.", f"{age} yo {'F' if female else 'M'}.",
        f"{age}-year-old {'woman' if female else 'man'}.", f"{'F' if female else 'M'} {age}.",
        f"{age}y {'female' if female else 'male'}.",
    ))


def _note(rng: np.random.Generator, level: str, *, sex: str, age: int, atypical: bool) -> str:
    if atypical:
        complaint = pick(rng, ATYPICAL_CARDIAC)
    else:
        condition = CONDITIONS[level][int(rng.integers(len(CONDITIONS[level])))]
        complaint = pick(rng, condition)
    duration = pick(rng, DURATIONS) if level != "emergent" or rng.random() < 0.3 else ""
    opener = pick(rng, OPENERS)
    body = " ".join(part for part in (opener, complaint, duration) if part) + "."
    body = body[0].upper() + body[1:]
    parts: list[tuple[str, bool]] = [(_patient(rng, sex, age), False), (body, False)]
    if rng.random() < 0.7:
        parts.append((_vitals(rng, level) + ".", True))
    if level != "emergent" and rng.random() < 0.35:
        parts.append((pick(rng, PERTINENT_NEGATIVES), True))
    if rng.random() < 0.5:
        parts.append((pick(rng, APPEARANCE[level]), True))
    if rng.random() < 0.5:
        parts.append((pick(rng, HISTORY), True))
    note = join_within(parts, max_chars=NOTE_MAX_CHARS)
    return add_typos(rng, note, TYPO_RATE)


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
