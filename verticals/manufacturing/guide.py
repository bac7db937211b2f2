"""Analysts' guides to the manufacturing problems (Markdown, shown in the web UI)."""

FAILURE_PREDICTION_GUIDE = """\
## Machine failure prediction

Predicts the probability that a machine fails, from one sensor reading per row. Built for
*rare* failures (a few per hundred readings).

### What to upload
- One row per reading (or per machine and shift), as CSV or any delimited text; files
  with a byte-order mark and Windows line endings (like AI4I 2020) are read as they are.
- A **failure** column with two values (0/1, yes/no). Names such as `Machine failure`,
  `Machine_failure`, `failure`, `fault` or `target` are recognised.
- The sensor readings *at the time of the reading*: temperatures, speed, torque, tool
  wear, vibration, current...
- Optionally the machine **type** or product tier (AI4I's `Type` L/M/H), or the
  production line: it is used for the operational audit below (and, like any audited
  attribute, not as a feature; list the features yourself to use it).

**Leave out the failure modes.** Columns that say *which* failure happened (AI4I's `TWF`,
`HDF`, `PWF`, `OSF`, `RNF`) are the label split into parts: a model using them "predicts"
perfectly and is useless in the plant. They are excluded automatically when named like
that; check the mapping. Reading ids (`UDI`) and serial numbers (`Product ID`) are
excluded too.

### How the model copes with rare failures
- The training loss weights each failure by (normal readings / failures) of the training
  rows, so the few failures count as much as the many normal readings.
- The split is stratified: training, validation and test each hold the same share of
  failures.
- The alarm threshold is chosen on the validation rows (the one with the best F1), never
  on the test rows, and shown in the report.

### Reading the metrics
All numbers come from a held-out test split.
- **PR AUC** (primary): average precision over all thresholds. Its chance level is the
  failure rate (about 0.03 on AI4I), not 0.5.
- **Recall at 90 % precision**: the share of failures caught when at most one alarm in
  ten may be false; 0 means no threshold is that precise.
- **F1**: at the chosen threshold. **ROC AUC** and **Brier** for reference (ROC AUC
  looks good on rare events even for weak models; class weighting raises the scores of
  every reading, so the Brier score, a calibration measure, is usually worse than the
  baseline's: read the scores as a ranking of risk, not as failure probabilities).
- The **confusion matrix** and the **precision-recall curve** on the results page show
  what the threshold trades: missed failures against false alarms.
- **Baseline**: logistic regression on the same split. The model must beat it on PR AUC.

### Privacy
Sensor readings describe machines, not people, so differential privacy is **off by
default**. It is available: switch it on when the readings could identify an operator
(e.g. per-operator shifts); the report then shows epsilon and a non-private twin.

### Operational audit (not a personal one)
The audit compares machine types (or lines) the way the personal audits compare people:
alarm rate, recall (true positive rate), false alarm rate and accuracy per type. It is
labelled **operational**: a gap means the model serves one type of machine worse (often
because that type has fewer failures to learn from), which matters for maintenance
planning, not for anyone's rights. Alarm rates may differ legitimately when failure rates
differ; the equalized-odds check (recall and false-alarm gaps up to 0.25) is the one to
read. Types with fewer than 50 readings are shown, not judged.
"""

REMAINING_USEFUL_LIFE_GUIDE = """\
## Remaining useful life (RUL)

Predicts how many cycles a machine (an engine, a pump, a spindle) has left before it
fails, from the recent history of its sensors.

### What to upload
- **Run-to-failure series**: one row per unit and cycle, each unit observed until it
  failed (like NASA's C-MAPSS `train_FD001.txt`).
- Map the columns: the **unit** (engine or machine id) and the **cycle** (cycle number,
  operating hours); every other numeric column is a sensor or an operating setting and
  becomes a feature (text columns are left out unless audited).
- The **RUL** column is optional. Without one, RUL is computed per unit as
  `last cycle of the unit - cycle`: this is only right when every unit ran *until it
  failed*. Units taken out of service early must be left out or given their true RUL.
- Optionally the production **line**, plant or machine type, for the operational audit.
- At least 3 units (training, validation and test are split by unit); more than 20 is
  better.

### A separate test set (C-MAPSS style)
A held-out test file holds *truncated* series (units observed up to some cycle before
failing) and a truth file gives each test unit's true RUL at its last cycle (C-MAPSS
`test_FD001.txt` and `RUL_FD001.txt`). Give both (`--test-file` and `--test-truth` on the
command line): test units are then judged on their last cycle only, as in the NASA
benchmark, and all uploaded units are used for training and validation.

### How the model works
- Each prediction looks at a **window** of the last 30 cycles of one unit (shorter early
  histories are padded with their first reading), standardised with statistics of the
  training units.
- The target is capped at **125 cycles**: early in life nothing in the sensors separates
  200 cycles left from 300, so the model is asked "is it healthy (125+), and if not, how
  long is left?". Metrics are computed against the capped truth.
- A small 1-D convolutional network reads the window (several operating conditions are
  handled by feeding the operating settings as inputs).
- The split is **by unit**: no unit has cycles in both training and test, so the test
  measures machines the model has never seen.

### Reading the metrics
- **RMSE** (primary), in cycles; **MAE** beside it.
- **NASA score**: sum over predictions of `exp(-d/13) - 1` for early predictions
  (`d = predicted - true < 0`) and `exp(d/10) - 1` for late ones: predicting failure too
  late costs more than too early. Lower is better; it grows with the number of
  predictions judged.
- **Baselines** on the same windows: *last value*, the (capped) RUL that the training
  units had at the same cycle of their life (what age alone tells); *mean RUL*, the
  average capped RUL of all training windows. The model must beat *last value*.
- The **RUL chart** shows, per test unit, the true and predicted RUL cycle by cycle.

### Privacy
Machine sensor data are not personal: differential privacy is **off by default** and
available. When on, its unit is one window: a unit contributes many windows, so the
guarantee protects single readings' windows, not whole machines.

### Operational audit
Error by production line (MAE, RMSE and bias = mean of predicted - true; a positive bias
means late warnings) is reported as an **operational** disparity: a line with larger
errors (older instruments, different duty) gets less reliable maintenance warnings. A
check flags a line whose MAE is more than 1.25 times the best line's.
"""

VISUAL_INSPECTION_GUIDE = """\
## Visual inspection

Classifies inspection images (surfaces, parts) into the classes you give: `ok` and each
defect type. Built on an ImageNet-pretrained network (EfficientNet-Lite0, shipped with
Tessera, never downloaded): a few hundred images per class are enough.

### What to upload
- A **ZIP with one folder per class** (`crazing/`, `scratches/`, `ok/`, ...), or
- a **ZIP of images plus a CSV** naming each image's file and label, with any grouping
  columns (production line, camera, shift, supplier).
- JPEG, PNG, BMP, TIFF or WebP; 16-bit, CMYK, palette and transparent images are
  converted, and EXIF rotation is applied. Other files are skipped and counted.
- At least 10 images per class; the same image under two labels is refused.

### Reading the report
All numbers come from a held-out test split, stratified by class.
- **Macro F1** (primary): every class counts the same, so a rare defect class weighs as
  much as `ok`. **Accuracy** beside it.
- **Per-class precision and recall** and the **confusion matrix**: which defects are
  missed, and what they are mistaken for.
- **Most confident mistakes**: the wrong answers the model was surest of, as thumbnails;
  often a labelling error.
- **Saliency maps** (Grad-CAM): where the model looked. A map on the background, not the
  defect, means it learnt something else.
- **References**: logistic regression on the frozen pretrained features, and the
  majority class. The model should beat both.

### Privacy
Off by default (images of parts are not personal); switch it on when images could show
people or when a customer's parts must stay private. The unit is one image. Only the
network's last layers are trained, privately, on features of the frozen pretrained trunk.

### Group audit (operational)
Per-class recall by line or camera: a camera that misses defects is the disparity that
matters here. Groups with fewer than 20 test images are shown, not judged.
"""
