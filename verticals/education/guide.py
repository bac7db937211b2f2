"""The analyst's guides to the education problems (Markdown, shown in the web UI)."""

_RESPONSES_UPLOAD = """\
### What to upload
- A **response log**: one row per answer a student gave in a tutor or quiz platform
  (ASSISTments, EdNet and Cognitive Tutor exports have this shape), as CSV or any
  delimited text.
- Map four roles: **student** (an id), **skill** (the skill, concept or knowledge
  component the item practises), **time** (an order number or a date and time; answers are
  read in this order per student) and the **target**: whether the answer was correct
  (0/1, true/false or correct/incorrect).
- Optional student attributes to audit: sex, age, free-lunch status, disability, home
  language. Put them on the rows, or upload them as a separate file keyed by student
  (`--attributes FILE` on the command line). They are **audited, never used as inputs**.
- At least 10 students; a few hundred give a useful model. Groups with fewer than 20
  answers are reported but not judged.

**One answer, one row.** Some exports list an answer once per skill it practises (the
same student and time repeated with another skill) or join skills in one cell ("3_7").
Counted per skill, the model would see the answer before predicting it, which inflates
AUC (a known flaw of early DKT results). Validation warns about such rows and training
keeps each answer once, with the combined skill ("3+7").
"""

_PRIVACY = """\
### Reading the privacy section
Training uses differential privacy (DP-SGD) with **one student's whole history as one
example**, so the guarantee protects each student, not single answers. The recurrent layer
had to be changed for this: PyTorch's GRU runs as one fused kernel whose per-student
gradients cannot be measured, so Opacus' validator swapped it for its DPGRU, the same
network computed step by step; the report says so. **Epsilon** is the budget spent
(default target 3; lower is more private). The report compares the private model with a
non-private twin trained on the same students: the gap is the price of privacy, larger for
small schools.
"""

KNOWLEDGE_TRACING_GUIDE = f"""\
## Knowledge tracing

Estimates, after every answer, how likely a student is to answer each skill correctly
next: their **mastery** of each skill. A recurrent network (DKT-style GRU) reads each
student's answers in order.

{_RESPONSES_UPLOAD}
### Reading the metrics
The students are **split**, not the answers: the test students were never seen in training,
as new learners would not be. Every answer of a test student is predicted from their
earlier answers only.
- **ROC AUC** (primary): the chance that a correct answer is scored above an incorrect one.
  0.5 is guessing; published DKT results on real tutors are 0.70-0.85.
- **Accuracy**: answers predicted right at a 0.5 cut; compare with the baseline.
- **Brier score**: mean squared error of the probabilities (lower is better).
- **Baseline**: each skill's mean correctness over the training students. A model that
  does not beat it learns nothing about individual students.

The **mastery curves** show, for a few test students, the predicted chance of success on
each skill they practised, step by step, with their answers underneath.

{_PRIVACY}
### Reading the fairness section
For each student attribute, the report shows the **AUC per group**: does the model track
every group's learning equally well? The check: the worst group's AUC is at least 90 % of
the best group's. The share of answers predicted correct per group is shown beside it for
reading only (groups may differ in what they know). The demo data plant a disparity:
students on free or reduced lunch get fewer practice opportunities and some of their
correct answers are logged wrong (time-outs on slow connections), so their AUC is lower.
A gap like this points to the data (access, logging), not only the model.
"""

NEXT_EXERCISE_GUIDE = f"""\
## Next-exercise tutoring

Recommends the skill each student should practise next. The knowledge tracing model
estimates the student's chance of success on every skill; the recommendation is the skill
in the **zone of proximal development** (predicted success between 0.5 and 0.85: hard
enough to learn from, easy enough to succeed) closest to 0.7.

{_RESPONSES_UPLOAD}
### Reading the metrics
The model is trained on the training students; each test student's first 80 % of answers
are read, and the recommendation is judged:
- **Share in the zone** (primary): recommendations whose predicted success is in
  0.5-0.85, beside a **random choice** of skill (the baseline).
- **Mean distance to target**: how far the predicted success is from 0.7 (lower is better).
- **Observed success**: how the students actually did on the recommended skill in their
  remaining answers, where they practised it (the count of such students is shown): a
  check that the predicted zone matches reality.
- **Skill coverage**: the share of skills recommended to anyone; a recommender that
  always says the same skill is suspicious.

The chart shows, per student, the predicted success on every skill and the one chosen.

{_PRIVACY}
### Reading the fairness section
The **share of recommendations in the zone, per student group**: every group should get
equally well-pitched exercises. The check: the worst group's share is at least 80 % of the
best group's. Groups with fewer than 20 test students are reported but not judged.
"""

OUTCOME_RISK_GUIDE = """\
## Student outcome risk

Estimates the probability that a student **fails** the course (final grade below 10 of 20)
so that support can start early.

### What to upload
- One row per student, as CSV or any delimited text (UCI's student-por.csv, with `;`
  separators and quoted values, works as it is).
- The **final grade** as the target (0-20, G3 in UCI's data). The problem turns it into two
  classes itself: **fail = G3 < 10** (the positive class the model predicts) and pass =
  G3 >= 10.
- What the school knows **early**: background, study time, past failures, absences,
  support. **Exclude the period grades G1 and G2**: they are earlier readings of the same
  grade (correlation about 0.9) and turn the model into "a student who failed the first
  term fails the year". The mapping excludes them by default.
- Sensitive attributes to audit: sex, age (banded <16, 16-17, 18+), home address
  (urban/rural) and parents' education (Medu, Fedu). They are **audited, never used as
  features**.

### Reading the metrics
On a held-out, stratified test split:
- **ROC AUC** (primary): the chance that a failing student is scored riskier than a
  passing one. **PR AUC** compares with the failure rate, its chance level.
- **Accuracy / F1** at the threshold chosen on the validation split; **Brier score** for
  calibration (lower is better).
- **Baseline**: a logistic regression on the same split and features.

### Reading the privacy section
DP-SGD bounds each student's influence on the model (default epsilon 3). A school year is a
small table: the private model pays a visible price against its non-private twin; read both.

### Reading the fairness section
Per group: the share flagged as at risk, true and false positive rates, accuracy; and the
four-fifths rule, demographic parity and equalized odds checks. Being flagged means extra
support, so a group flagged more often is not necessarily harmed; a group whose failing
students are missed (low true positive rate) is. The demo data plant a grading bias: rural
students' final grades are 2.5 points lower at the same performance; travel time is a proxy
for address, so the model flags rural students more.
"""
