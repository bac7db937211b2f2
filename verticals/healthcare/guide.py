"""Analysts' guides for the healthcare problems (Markdown, shown in the web UI)."""

READMISSION_GUIDE = """\
## Readmission risk

Predicts the probability that a patient comes back (30-day readmission) or has the outcome
you choose (e.g. diabetes), from past encounters whose outcome you know.

### What to upload
- One row per encounter (admission, visit): an **outcome** column with two values
  (yes/no, 0/1), and what was known **at discharge**: age, diagnoses, length of stay,
  prior admissions, medications, lab results, discharge disposition.
- The attributes you must audit: age (audited in bands <40, 40-64, 65-79, 80+), sex or
  gender, race or ethnicity, insurance. They are **audited, never used as features**.
- Leave out anything recorded after discharge (follow-up visits, the readmission date):
  it leaks the outcome.
- **Zeros that mean "not measured"** (glucose, blood pressure, skin thickness, insulin, BMI
  in the Pima diabetes file) are declared by this problem; until the platform converts
  them, replace them with blanks before upload for the cleanest model.

### Reading the results
- **ROC AUC** (primary) and **PR AUC** beside a logistic-regression baseline; **Brier** is
  calibration (lower is better): whether a predicted 30 % really means 30 of 100.
- The fairness panel compares selection rates and error rates between groups: in the demo
  data, patients on Medicaid or uninsured are readmitted more often at the same clinical
  risk (weaker access to follow-up care), which the audit shows as a gap.
- Privacy is on by default (differential privacy, epsilon 3).
"""

NOTE_TRIAGE_GUIDE = """\
## Clinical note triage

Reads free-text notes (triage notes, referral letters) and predicts their urgency label,
so the most urgent patients are seen first. The labels are yours: e.g. emergent / urgent /
routine, or ESI levels 1-5.

### What to upload
- One row per note: the **note text** and the **urgency** a clinician recorded.
- Optional: sex and age of the patient, to audit the model per group (never read by it).
- De-identify notes first (names, record numbers, dates). The model runs on the platform,
  never on an outside service, and learns with differential privacy (epsilon 8).
- A few hundred notes at least; every label needs several examples.

### How it works
A sentence encoder (all-MiniLM-L6-v2, shipped with the platform) turns each note into a
sentence embedding (mean of its token vectors, as the encoder was trained). Without privacy,
its last 2 layers and a small classifier are fine-tuned on your labels. With privacy (the
default), DP-SGD trains the classifier alone on the frozen embeddings: fine-tuning whole
layers under DP noise learns almost nothing from a few thousand notes, the classifier does
(the run's notes give the numbers). A non-private twin is trained for comparison only.

### Reading the results
- **Macro F1** (primary) treats every urgency level equally; **accuracy** is the share
  right. Both sit beside a TF-IDF + logistic regression baseline.
- The **confusion matrix** shows under-triage (emergent predicted as urgent) at a glance.
- The fairness panel shows accuracy and macro F1 per sex and age band. In the demo data,
  women's cardiac emergencies are written up with atypical symptoms more often and were
  under-triaged in 25 % of cases: a model trained on those labels repeats the bias, and
  the audit shows it as a lower score for women.
"""
