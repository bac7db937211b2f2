"""The manufacturing vertical: failure prediction and remaining useful life from sensor data.

Sensor readings describe machines, not people: privacy is off by default (available), and
the fairness audit compares machine types and production lines as *operational*
disparities (does the model serve every tier and line equally well?), not personal ones.
"""

from __future__ import annotations

from ml_core.families.image.columns import IMAGE_BYTES_COLUMN
from ml_core.spec import (
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
from verticals.manufacturing.demo_data import machine_readings, run_to_failure
from verticals.manufacturing.demo_images import surface_images
from verticals.manufacturing.guide import (
    FAILURE_PREDICTION_GUIDE,
    REMAINING_USEFUL_LIFE_GUIDE,
    VISUAL_INSPECTION_GUIDE,
)

# What the privacy guarantee protects for this vertical, said plainly on every page.
MACHINE_NOTE = (
    "The data describes machines, not people: the unit protected is one machine (all its "
    "readings), which hides one machine's history from the model, not a worker's."
)

FAILURE_TARGET_NAMES = (
    "machine_failure", "failure", "failed", "target", "fault", "breakdown", "label",
)
READING_ID_NAMES = ("udi", "reading_id", "record_id", "observation_id", "id")
# The AI4I failure modes say *why* a machine failed: they are the label itself, split up.
# Serial numbers identify a product, they carry no signal that generalises.
FAILURE_EXCLUDE_NAMES = (
    "twf", "hdf", "pwf", "osf", "rnf", "failure_type", "failure_mode", "product_id",
    "serial_number",
)
# Operational groups: product tier, machine type, production line, plant.
OPERATIONAL_GROUP_NAMES = ("type", "machine_type", "product_type", "tier", "line",
                           "production_line", "plant", "site")

FAILURE_PREDICTION = ProblemSpec(
    key="failure_prediction",
    name="Machine failure prediction",
    description=(
        "Probability that a machine fails, from one sensor reading per row (temperatures, "
        "speed, torque, tool wear); built for rare failures, judged by precision-recall, "
        "and compared across machine types as an operational audit."
    ),
    task_type=TaskType.BINARY_CLASSIFICATION,
    hints=(
        RoleHint(role=ColumnRole.TARGET, names=FAILURE_TARGET_NAMES, required=True),
        RoleHint(role=ColumnRole.ID, names=READING_ID_NAMES),
        RoleHint(role=ColumnRole.EXCLUDE, names=FAILURE_EXCLUDE_NAMES),
    ),
    sensitive_hints=OPERATIONAL_GROUP_NAMES,
    # Rare positives: accuracy and ROC AUC flatter a model that never raises an alarm.
    metrics=("pr_auc", "recall_at_90_precision", "f1", "roc_auc", "brier"),
    primary_metric="pr_auc",
    baseline="logistic_regression",
    model_family="tabular_mlp",
    privacy_unit=PrivacyUnit("machine", note=MACHINE_NOTE),
    # Sensor data hold nothing about people: off by default, available (target epsilon 3).
    privacy=PrivacyConfig(enabled=False, target_epsilon=3.0),
    # Alarm rates legitimately differ between tiers whose failure rates differ (the L tier
    # fails twice as often as H in AI4I), so selection-rate gaps are only flagged when one
    # tier is almost never alarmed; the real question, equal recall and false-alarm rates
    # per tier, is the equalized-odds check. Tiers below 50 readings are shown, not judged.
    fairness=FairnessPolicy(
        kind="operational",
        min_disparate_impact_ratio=0.2,
        max_demographic_parity_difference=0.1,
        max_equalized_odds_difference=0.25,
        min_group_size=50,
        # An alarm brings maintenance to the machine: the favourable outcome for a tier.
        favourable=FavourableOutcome(positive=True, text="alarmed for maintenance"),
    ),
    # Class weighting (negatives/positives) so that 3 % failures are not ignored; early
    # stopping on validation PR AUC. Learning rate 1e-2 as in finance: trains in few epochs.
    train=TrainConfig(
        epochs=40, batch_size=128, learning_rate=1e-2, hidden_sizes=(64, 32), patience=8,
        class_weighting=True,
    ),
    # Weekly, Sunday 04:00: readings accumulate quickly and machines change with maintenance.
    retrain_cron="0 4 * * 0",
    min_rows=200,
)

FAILURE_SAMPLE_MAPPING = ColumnMapping(
    target="Machine failure",
    sensitive=("Type",),
    exclude=("Product ID", "TWF", "HDF", "PWF", "OSF", "RNF"),
    id="UDI",
)

RUL_TARGET_NAMES = ("rul", "remaining_useful_life", "remaining_life", "cycles_to_failure",
                    "time_to_failure", "ttf")
UNIT_NAMES = ("unit", "unit_id", "unit_number", "engine", "engine_id", "machine_id", "asset_id",
              "serial_number", "id")
CYCLE_NAMES = ("cycle", "cycles", "time_in_cycles", "time_cycles", "time", "timestamp",
               "operating_hours", "hours")

REMAINING_USEFUL_LIFE = ProblemSpec(
    key="remaining_useful_life",
    name="Remaining useful life",
    description=(
        "How many cycles a machine has left before it fails, from its run of sensor "
        "readings; judged by RMSE and NASA's asymmetric score (late predictions cost more), "
        "and compared across production lines as an operational audit."
    ),
    task_type=TaskType.SEQUENCE_REGRESSION,
    hints=(
        # Optional: without a target column, RUL = last cycle of the unit - cycle.
        RoleHint(role=ColumnRole.TARGET, names=RUL_TARGET_NAMES),
        # Task roles of the sequence_regressor family (ml_core.families.sequence_regression).
        RoleHint(role="unit", names=UNIT_NAMES, required=True),  # type: ignore[arg-type]
        RoleHint(role="cycle", names=CYCLE_NAMES, required=True),  # type: ignore[arg-type]
    ),
    sensitive_hints=("line", "production_line", "machine_type", "plant", "site", "fleet"),
    metrics=("rmse", "nasa_score", "mae"),
    primary_metric="rmse",
    # The stronger of the two baselines (see ml_core.families.sequence_regression); the
    # mean-RUL baseline is reported beside it.
    baseline="last_value",
    model_family="sequence_regressor",
    privacy_unit=PrivacyUnit("machine", role="unit", note=MACHINE_NOTE),
    privacy=PrivacyConfig(enabled=False, target_epsilon=3.0),
    fairness=FairnessPolicy(kind="operational", min_group_size=20, favourable=FavourableOutcome(
        positive=True, text="predicted accurately")),
    # C-MAPSS practice: windows of 30 cycles, RUL capped at 125 (early in life nothing in
    # the sensors tells 200 cycles left from 300). Learning rate 3e-3 and batch 64 train the
    # 1-D CNN in a few epochs on a few thousand windows.
    train=TrainConfig(
        epochs=30, batch_size=64, learning_rate=3e-3, hidden_sizes=(32, 32), patience=6,
        window=30, rul_cap=125,
    ),
    retrain_cron="0 4 1 * *",  # monthly: new run-to-failure histories arrive slowly
    min_rows=100,
)

RUL_SAMPLE_MAPPING = ColumnMapping(
    target="rul",
    sensitive=("line",),
    roles=(("unit", "unit"), ("cycle", "cycle")),
)

VISUAL_INSPECTION = ProblemSpec(
    key="visual_inspection",
    name="Visual inspection",
    description=(
        "Classifies inspection images (surfaces, parts) into ok and defect classes by "
        "transfer learning from an ImageNet-pretrained network; judged by macro F1, with "
        "per-class recall compared across lines and cameras as an operational audit."
    ),
    task_type=TaskType.IMAGE_CLASSIFICATION,
    hints=(
        RoleHint(role=ColumnRole.TARGET, names=("label", "class", "defect", "category",
                                                "target"), required=True),
        # Task role of the image_classifier family (ml_core.families.image): the image's
        # path in the ZIP, the row id of predictions. The bytes travel in an internal column.
        RoleHint(role="image", names=("file", "image", "path", "filename",  # type: ignore[arg-type]
                                      "image_path", "file_name")),
        # Excluded so that the table checks do not read bytes as text; the family reads it.
        RoleHint(role=ColumnRole.EXCLUDE, names=(IMAGE_BYTES_COLUMN,)),
    ),
    sensitive_hints=("line", "production_line", "camera", "station", "shift", "supplier",
                     "plant", "site"),
    metrics=("macro_f1", "accuracy"),
    primary_metric="macro_f1",
    baseline="frozen_logistic",
    model_family="image_classifier",
    # Images of parts are not personal: off by default, available at epsilon 8 (the level
    # measured on NEU in docs/images.md).
    privacy=PrivacyConfig(enabled=False, target_epsilon=8.0),
    # A part classified as its true class (a defect found, a sound part passed): the audit
    # compares per-class recall across lines and cameras.
    fairness=FairnessPolicy(kind="operational", min_group_size=20, favourable=FavourableOutcome(
        positive=True, text="classified as its true class")),
    # The top (last block, head, classifier) trains on cached activations; 15 epochs as
    # measured in docs/images.md. Batch 128 gives DP-SGD a sampling rate near 0.1 on a
    # thousand training images.
    train=TrainConfig(epochs=15, batch_size=128, learning_rate=1e-3, patience=8),
    retrain_cron="0 4 1 * *",  # monthly: labelled images accumulate slowly
    min_rows=30,
)

VISUAL_INSPECTION_SAMPLE_MAPPING = ColumnMapping(
    target="label",
    sensitive=("line",),
    exclude=("camera", IMAGE_BYTES_COLUMN),
    roles=(("image", "file"),),
)

VERTICAL = Vertical(
    key="manufacturing",
    name="Manufacturing",
    description=(
        "Predictive maintenance and inspection: which machines will fail, how long they "
        "have left, and which parts are defective (from images), with performance compared "
        "across machine types, production lines and cameras."
    ),
    problems=(
        Problem(
            spec=FAILURE_PREDICTION,
            sample_data=machine_readings,
            sample_mapping=FAILURE_SAMPLE_MAPPING,
            guide=FAILURE_PREDICTION_GUIDE,
        ),
        Problem(
            spec=REMAINING_USEFUL_LIFE,
            sample_data=run_to_failure,
            sample_mapping=RUL_SAMPLE_MAPPING,
            guide=REMAINING_USEFUL_LIFE_GUIDE,
        ),
        Problem(
            spec=VISUAL_INSPECTION,
            sample_data=surface_images,
            sample_mapping=VISUAL_INSPECTION_SAMPLE_MAPPING,
            guide=VISUAL_INSPECTION_GUIDE,
        ),
    ),
)
