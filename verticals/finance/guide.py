"""The analyst's guide to the credit default risk problem (Markdown, shown in the web UI)."""

from ml_core.fairness import band_labels
from ml_core.spec import Banding

# The one declaration of credit risk's age bands: the problem's spec, the profile, the
# fairness report and this guide's text all come from it.
AGE_BANDING = Banding(column_hint="age", edges=(25, 35, 50, 65))

CREDIT_RISK_GUIDE = """\
## Credit default risk

Predicts the probability that an applicant defaults, from past applications whose outcome
you know.

### What to upload
- One row per application or loan, as CSV or any delimited text (comma, semicolon, tab,
  pipe or spaces; a header row is optional: without one, columns are named `column_1`,
  `column_2`, ...).
- An **outcome** column with two values, such as 0/1, good/bad or 1/2 (the Statlog German
  credit file uses 1 = good, 2 = bad). The rarer value is treated as "default" unless you
  choose the positive label yourself.
- The applicant's financial facts *at the time of the decision*: amount, duration,
  income, savings, credit history, employment, housing, purpose.
- The sensitive attributes you must audit: sex, age, marital status, nationality or
  foreign-worker status. They are **audited, never used as features**.
- At least a few hundred rows; groups with fewer than 20 rows are reported but not judged.

Leave out anything recorded *after* the decision (arrears, days past due, collection
status, write-off amount): it leaks the outcome and makes the model look better than it is.
Mark identifiers (application or customer id) as *id* so they are not learnt from.

### Reading the metrics
All numbers are measured on a held-out test split the model never saw.
- **ROC AUC** (primary): the chance that a random defaulter is scored riskier than a random
  good payer. 0.5 is guessing; 0.7-0.8 is typical for credit scoring.
- **PR AUC**: precision-recall area; compare it with the default rate, its chance level.
- **Accuracy / F1**: at the 0.5 threshold; accuracy flatters models on rare defaults.
- **Brier score**: mean squared error of the probabilities (lower is better, calibration).
- **KS**: the largest gap between defaulters' and good payers' score distributions, the
  statistic credit risk teams traditionally report.
- **Baseline**: a logistic regression on the same split. A model that does not beat it
  is not worth its complexity.

### Reading the privacy section
Training uses differential privacy (DP-SGD): each applicant's influence on the model is
bounded and hidden by noise. **Epsilon** is the privacy budget actually spent (default
target 3; lower is more private), **delta** the small probability the guarantee fails.
The report compares the private model with a non-private twin trained on the same split:
the difference in ROC AUC is the price of privacy. Small tables pay a higher price.

### Reading the fairness section
For each sensitive attribute (age in bands {age_bands}) the report
shows, per group, the share **predicted not to default** (the favourable outcome for the
applicant), the selection rate (share predicted to default), the true and false positive
rates and the accuracy, and three checks:
- **Disparate impact ratio** >= 0.8 (the four-fifths rule): the least-favoured group's share
  predicted not to default divided by the most-favoured group's.
- **Demographic parity difference** <= 0.1: highest minus lowest selection rate.
- **Equalized odds difference** <= 0.15: the larger gap in true or false positive rates.

A failed check does not block training; it asks the reviewer for a decision. Historical
defaults can themselves be biased (the demo data plant such a bias against foreign
workers), and a model that never sees the attribute can still learn it from proxies such
as tenure, income or housing. Read the group table before approving.
""".replace("{age_bands}", ", ".join(band_labels(AGE_BANDING)))
