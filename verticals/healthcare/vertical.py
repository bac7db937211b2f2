"""The healthcare vertical: 30-day readmission risk (tabular) and clinical-note triage (text)."""

from __future__ import annotations

from ml_core.spec import (
    Banding,
    CodeHierarchy,
    ColumnMapping,
    ColumnRole,
    FairnessPolicy,
    FavourableOutcome,
    PrivacyConfig,
    PrivacyUnit,
    ProblemSpec,
    RoleHint,
    TaskType,
    TrainConfig,
)
from verticals.base import Problem, Vertical
from verticals.healthcare.demo_data import encounters, triage_notes
from verticals.healthcare.guide import NOTE_TRIAGE_GUIDE, READMISSION_GUIDE

READMISSION_TARGETS = (
    "readmitted", "readmission", "readmitted_30d", "readmit_30", "readmission_30_days",
    "outcome", "target", "diabetes", "class", "label", "y",
)
ENCOUNTER_IDS = ("encounter_id", "admission_id", "visit_id", "stay_id", "hadm_id",
                 "patient_nbr", "patient_id", "id")
SENSITIVE_NAMES = ("age", "sex", "gender", "race", "ethnicity", "insurance", "payer",
                   "payer_code")
AGE_BANDS = Banding(column_hint="age", edges=(40, 65, 80))
# Clinical measurements that cannot be zero in a living patient: a 0 in these columns means
# "not measured" (the Pima diabetes file codes missing values so). Matched like hints.
# ml_core.data does not read this yet: see the guide and the report to the lead.
ZERO_MEANS_MISSING = (
    "glucose", "plasma_glucose_concentration", "blood_pressure", "bloodpressure",
    "skin_thickness", "skinthickness", "triceps_skin_fold_thickness", "insulin",
    "serum_insulin", "bmi",
)

# Diagnosis code columns follow ICD-9-CM's public chapters and three-character categories
# (diag_1..3 in the UCI diabetes encounters file, icd9_code in MIMIC-III).
DIAGNOSIS_CODES = CodeHierarchy(kind="icd9", column_hints=(
    "diag_1", "diag_2", "diag_3", "icd9_code", "icd9", "diagnosis_code", "diag", "dx",
    "primary_diagnosis", "secondary_diagnosis"))

READMISSION_RISK = ProblemSpec(
    key="readmission_risk",
    name="Readmission risk",
    description=(
        "Probability that a patient is readmitted (or has the outcome) after an encounter, "
        "learnt from past encounters; audited by age band, sex, race and insurance."
    ),
    task_type=TaskType.BINARY_CLASSIFICATION,
    hints=(
        RoleHint(role=ColumnRole.TARGET, names=READMISSION_TARGETS, required=True),
        RoleHint(role=ColumnRole.ID, names=ENCOUNTER_IDS),
    ),
    sensitive_hints=SENSITIVE_NAMES,
    banding=(AGE_BANDS,),
    metrics=("roc_auc", "pr_auc", "brier", "accuracy", "f1", "ks"),
    primary_metric="roc_auc",
    baseline="logistic_regression",
    model_family="tabular_mlp",
    privacy_unit=PrivacyUnit("patient"),
    privacy=PrivacyConfig(enabled=True, target_epsilon=3.0),
    # A patient flagged at risk is offered follow-up care: favourable.
    fairness=FairnessPolicy(min_group_size=20, favourable=FavourableOutcome(
        positive=True, text="flagged for follow-up care")),
    # Same sizing as credit risk (1k-100k rows); 1e-2 for the same reason (DP noise).
    train=TrainConfig(epochs=30, batch_size=64, learning_rate=1e-2, hidden_sizes=(64, 32),
                      patience=5),
    retrain_cron="0 2 1 * *",  # monthly: outcomes arrive 30 days after discharge
    code_hierarchies=(DIAGNOSIS_CODES,),
)

NOTE_TRIAGE = ProblemSpec(
    key="note_triage",
    name="Clinical note triage",
    description=(
        "Reads free-text triage or referral notes and predicts their urgency, so the most "
        "urgent patients are seen first; audited by sex and age band."
    ),
    task_type=TaskType.TEXT_CLASSIFICATION,
    hints=(
        RoleHint(role=ColumnRole.TARGET, names=("urgency", "acuity", "triage_level", "esi",
                                                "priority", "category", "label", "class",
                                                "target"), required=True),
        RoleHint(role=ColumnRole.TEXT, names=("note", "notes", "note_text", "text",
                                              "clinical_note", "triage_note", "narrative",
                                              "chief_complaint", "description", "report")),
        RoleHint(role=ColumnRole.ID, names=("note_id", "encounter_id", "visit_id", "id")),
    ),
    sensitive_hints=("sex", "gender", "age", "race", "ethnicity"),
    banding=(AGE_BANDS,),
    metrics=("macro_f1", "accuracy", "weighted_f1"),
    primary_metric="macro_f1",
    baseline="tfidf_logistic_regression",
    model_family="text_encoder",
    privacy_unit=PrivacyUnit("patient"),
    # DP on text needs a larger budget than a tabular model to learn anything from a few
    # thousand notes; 8 is the common choice in DP NLP work. Privately only the head trains
    # (over frozen sentence embeddings); the non-private model also tunes the last 2 layers.
    privacy=PrivacyConfig(enabled=True, target_epsilon=8.0),
    fairness=FairnessPolicy(min_group_size=20, favourable=FavourableOutcome(
        positive=True, text="triaged as urgent")),
    train=TrainConfig(epochs=8, batch_size=16, learning_rate=3e-4, patience=3, max_length=64),
    retrain_cron="0 3 * * 1",
    min_rows=60,
)

VERTICAL = Vertical(
    key="healthcare",
    name="Healthcare",
    description="Readmission risk and note triage for hospitals, private and audited by default.",
    problems=(
        Problem(
            spec=READMISSION_RISK,
            sample_data=encounters,
            sample_mapping=ColumnMapping(
                target="readmitted", id="encounter_id",
                sensitive=("age", "sex", "race", "insurance"), positive_label="yes",
            ),
            guide=READMISSION_GUIDE,
        ),
        Problem(
            spec=NOTE_TRIAGE,
            sample_data=triage_notes,
            sample_mapping=ColumnMapping(
                target="urgency", id="note_id", sensitive=("sex", "age"),
                roles=(("text", "note"),),
            ),
            guide=NOTE_TRIAGE_GUIDE,
        ),
    ),
)
