"""Empirical privacy audit: canaries, a membership-inference test and an epsilon lower bound.

The accountant proves an upper bound on epsilon *if the implementation is right*. This audit
checks the implementation from the outside, as in Jagielski, Ullman & Oprea (2020),
"Auditing Differentially Private Machine Learning: How Private is Private SGD?" and Nasr et
al. (2021), "Adversary Instantiation: Lower Bounds for Differentially Private Machine
Learning", in the one-training-run form of Steinke, Nasr & Jagielski (2023), "Privacy
Auditing with One (1) Training Run":

1. plant ``k`` canaries: records outside the data (every encoded feature at about
   +-``scale`` standard deviations, random signs and magnitudes) with a random label: a model that
   did not see a canary can only guess its label, one that memorised it fits it closely
   (labels chosen against a linear model's guess were tried: the member canaries then
   teach the model the flipped pattern, and non-members fit it too);
2. include each canary in the training rows with probability 1/2 (a fair coin per canary,
   seeded), and train once with the configuration under audit;
3. score each canary by minus its loss under the trained model (members should score
   higher), and guess "member" when the score is at least a threshold ``t``;
4. at each threshold, bound the true positive rate from below and the false positive rate
   from above with exact Clopper-Pearson intervals; an (epsilon, delta)-DP training
   satisfies ``TPR <= e^eps FPR + delta`` and ``TNR <= e^eps FNR + delta`` for any test, so

       eps_lb = max over t of max( log((TPR_low - delta) / FPR_up),
                                   log((TNR_low - delta) / FNR_up) )

   is an epsilon lower bound. The thresholds are a fixed grid (the pooled scores' quantiles,
   which never look at membership); every threshold and both forms are tested at once, so
   the confidence level is split between them (Bonferroni): the bound holds with the
   stated confidence for the whole search, not only for the best-looking threshold.

What it shows: a lower bound *above* the claimed epsilon means the training leaks more than
it claims (a broken clipping or noise step, a sampling bug): the claim is false. A lower
bound below the claim is consistent with it (it does not prove it: the accountant does).
Caveats: the canaries are treated as independent trials, as in one-run audits; and the
audit run is a separate training with the same settings plus canaries, so it audits the
*configuration*, not the released weights.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.stats import binom

from ml_core import cancellation
from ml_core.data import EncodedSplit
from ml_core.spec import PrivacyConfig, TrainConfig

DEFAULT_CANARIES = 256
DEFAULT_CONFIDENCE = 0.95
# Candidate thresholds: the pooled scores' quantiles at 1/Q, ..., (Q-1)/Q. A fixed, small
# grid keeps the Bonferroni factor (2 (Q - 1) tests) small, so the bound stays tight.
THRESHOLD_QUANTILES = 20
CANARY_SCALE = 2.0  # canary features sit this many (encoded) standard deviations out
METHOD = ("one-run membership-inference audit with planted canaries (Steinke, Nasr & "
          "Jagielski 2023); Clopper-Pearson bounds on TPR and FPR over every threshold, "
          "Bonferroni-corrected (Jagielski et al. 2020; Nasr et al. 2021)")


# --- the statistic ---------------------------------------------------------------------------


def clopper_pearson_lower(successes: int, trials: int, alpha: float) -> float:
    """Exact one-sided lower bound on a binomial rate: the p with P[Bin(n, p) >= k] = alpha.

    Computed by inverting the binomial tail (not from the beta quantile, which tests use
    as the independent reference)."""
    if successes <= 0:
        return 0.0
    if successes >= trials:
        return float(alpha ** (1.0 / trials))
    return float(brentq(lambda p: binom.sf(successes - 1, trials, p) - alpha, 1e-15,
                        1.0 - 1e-15, xtol=1e-14))


def clopper_pearson_upper(successes: int, trials: int, alpha: float) -> float:
    """Exact one-sided upper bound on a binomial rate: the p with P[Bin(n, p) <= k] = alpha."""
    return 1.0 - clopper_pearson_lower(trials - successes, trials, alpha)


@dataclass(frozen=True)
class EpsilonBound:
    """The best membership test found and the epsilon lower bound it proves."""

    epsilon_lower_bound: float  # 0.0 when no test beats chance with confidence
    confidence: float
    threshold: float | None  # guess "member" when score >= threshold
    form: str  # "tpr/fpr" or "tnr/fnr"
    true_positives: int
    false_positives: int
    members: int
    non_members: int
    rate_low: float  # TPR (or TNR) lower bound at the best threshold
    rate_up: float  # FPR (or FNR) upper bound at the best threshold
    tests: int  # thresholds x forms searched (the Bonferroni factor)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _log_ratio(low: float, up: float, delta: float) -> float:
    if low - delta <= 0:
        return 0.0
    if up <= 0:
        return math.inf
    return max(0.0, math.log((low - delta) / up))


def epsilon_lower_bound(
    scores: np.ndarray, is_member: np.ndarray, *, delta: float = 0.0,
    confidence: float = DEFAULT_CONFIDENCE, quantiles: int = THRESHOLD_QUANTILES,
) -> EpsilonBound:
    """Epsilon lower bound from membership scores (higher: more likely a member).

    Thresholds are the pooled scores' ``j / quantiles`` quantiles (j = 1 .. quantiles - 1,
    duplicates merged); each is a test "member iff score >= t" read both ways (TPR/FPR and
    TNR/FNR). The ``1 - confidence`` error is shared equally among all of them and, within
    one, between its two one-sided bounds.
    """
    scores = np.asarray(scores, dtype=float)
    member = np.asarray(is_member, dtype=bool)
    positives, negatives = int(member.sum()), int((~member).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("the audit needs both members and non-members")
    levels = np.arange(1, quantiles) / quantiles
    thresholds = np.unique(np.quantile(scores, levels, method="inverted_cdf"))
    tests = 2 * len(thresholds)
    alpha = (1.0 - confidence) / (2 * tests)  # two one-sided bounds per test
    best = EpsilonBound(0.0, confidence, None, "tpr/fpr", 0, 0, positives, negatives,
                        0.0, 1.0, tests)
    for threshold in thresholds:
        guessed = scores >= threshold
        tp, fp = int((guessed & member).sum()), int((guessed & ~member).sum())
        tpr_low = clopper_pearson_lower(tp, positives, alpha)
        fpr_up = clopper_pearson_upper(fp, negatives, alpha)
        # The same test read the other way: non-members correctly left out vs members missed.
        tnr_low = clopper_pearson_lower(negatives - fp, negatives, alpha)
        fnr_up = clopper_pearson_upper(positives - tp, positives, alpha)
        for form, low, up in (("tpr/fpr", tpr_low, fpr_up), ("tnr/fnr", tnr_low, fnr_up)):
            value = _log_ratio(low, up, delta)
            if value > best.epsilon_lower_bound:
                best = EpsilonBound(value, confidence, float(threshold), form, tp, fp,
                                    positives, negatives, low, up, tests)
    return best


# --- canaries and the audit run --------------------------------------------------------------


@dataclass(frozen=True)
class Canaries:
    """``k`` canary persons, each with ``rows_per_canary`` rows (1: a canary is a record)."""

    x: np.ndarray  # (k * rows, n_features) float32, in the encoded feature space
    y: np.ndarray  # (k * rows,) float32 labels 0/1, one label per canary person
    member: np.ndarray  # (k,) bool: the canary person's rows are in the training rows
    owner: np.ndarray  # (k * rows,) int: the canary person each row belongs to

    @property
    def row_member(self) -> np.ndarray:
        return self.member[self.owner]


def make_canaries(split: EncodedSplit, *, k: int, seed: int,
                  scale: float = CANARY_SCALE, rows_per_canary: int = 1) -> Canaries:
    """``k`` out-of-distribution canary persons with random labels, and a fair coin per
    canary for membership (see the module docstring). With ``rows_per_canary > 1`` each
    canary person holds that many rows around their own point (small jitter, one label),
    like a patient's encounters: the audit then tests membership of a whole person."""
    if k < 4:
        raise ValueError("an audit needs at least 4 canaries")
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(k, split.n_features))
    centres = signs * scale * rng.uniform(0.75, 1.25, size=signs.shape)
    labels = rng.integers(0, 2, k)
    member = rng.random(k) < 0.5
    # Both sides are needed; a degenerate coin (tiny k) is redrawn deterministically.
    while member.all() or not member.any():
        member = rng.random(k) < 0.5
    owner = np.repeat(np.arange(k), rows_per_canary)
    x = centres[owner]
    if rows_per_canary > 1:
        x = x + rng.normal(0.0, 0.1, size=x.shape)
    return Canaries(x=x.astype(np.float32), y=labels[owner].astype(np.float32),
                    member=member, owner=owner)


def with_canaries(split: EncodedSplit, canaries: Canaries) -> EncodedSplit:
    """``split`` with the member canaries' rows appended to its training rows; each canary
    person gets a person code of its own (used when the split is by person)."""
    rows = canaries.row_member
    x = canaries.x[rows]
    y = canaries.y[rows].astype(split.y_train.dtype)
    ids = np.array([f"canary-{i}-{j}" for j, i in enumerate(canaries.owner[rows])],
                   dtype=object)
    weights = None
    if split.w_train is not None:
        weights = np.concatenate([split.w_train, np.ones(len(y), dtype=np.float32)])
    persons = split.persons_train
    if persons is not None:
        first = int(persons.max()) + 1 if len(persons) else 0
        persons = np.concatenate([persons, first + canaries.owner[rows]])
    return dataclasses.replace(
        split, x_train=np.concatenate([split.x_train, x]).astype(np.float32),
        y_train=np.concatenate([split.y_train, y]),
        ids_train=np.concatenate([split.ids_train.astype(object), ids]), w_train=weights,
        persons_train=persons,
    )


def canary_scores(model: torch.nn.Module, canaries: Canaries) -> np.ndarray:
    """Per canary person, minus the mean binary cross-entropy of their rows under
    ``model`` (higher: fits them better)."""
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(canaries.x)).reshape(-1).double()
        labels = torch.from_numpy(canaries.y).double()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, labels, reduction="none").numpy()
    k = len(canaries.member)
    return -np.bincount(canaries.owner, weights=loss, minlength=k) / np.bincount(
        canaries.owner, minlength=k)


@dataclass(frozen=True)
class AuditResult:
    bound: EpsilonBound
    claimed_epsilon: float | None  # what the audited configuration's accountant reported
    delta: float
    canaries: int
    privacy: dict  # the audit run's own privacy report
    seconds: float

    @property
    def consistent(self) -> bool:
        """True when the lower bound does not exceed the claimed epsilon."""
        return (self.claimed_epsilon is None
                or self.bound.epsilon_lower_bound <= self.claimed_epsilon + 1e-9)

    def to_dict(self) -> dict:
        bound = self.bound.to_dict()
        return {
            "epsilon_lower_bound": bound.pop("epsilon_lower_bound"),
            "confidence": bound.pop("confidence"),
            "claimed_epsilon": self.claimed_epsilon, "delta": self.delta,
            "consistent": self.consistent, "canaries": self.canaries,
            "test": bound, "privacy": self.privacy, "seconds": self.seconds,
            "method": METHOD,
        }


def audit_tabular(
    split: EncodedSplit, *, train: TrainConfig, privacy: PrivacyConfig | None,
    canaries: int = DEFAULT_CANARIES, seed: int = 0, claimed_epsilon: float | None = None,
    confidence: float = DEFAULT_CONFIDENCE, primary_metric: str = "roc_auc",
    rows_per_canary: int = 1,
) -> AuditResult:
    """Train the tabular MLP once on ``split`` plus canaries with ``privacy``, and bound
    epsilon from below by membership inference on the canaries.

    With ``rows_per_canary > 1`` the canaries are persons with several rows; on a split by
    person (``split.person_column``) training samples and clips them as persons, so the
    bound tests the person-level claim. On a split whose rows are persons the same canaries
    show what a row-level claim is worth for a person with several rows.

    ``claimed_epsilon`` defaults to the epsilon the audit run's accountant reports; pass it
    to audit a configuration that claims a budget it does not enforce (a test passes
    ``privacy=None``: no clipping, no noise, while claiming some epsilon).

    Cancellable (:mod:`ml_core.cancellation`): before planting, before every training step
    and before scoring; the exception carries the audit training's privacy spent so far.
    """
    from ml_core.privacy import resolve_delta
    from ml_core.trainer import train_model

    started = time.perf_counter()
    cancellation.check()
    planted = make_canaries(split, k=canaries, seed=seed, rows_per_canary=rows_per_canary)
    audited = with_canaries(split, planted)
    # The audit's training asks the caller's cancel check (ml_core.cancellation) before
    # every step, as a run's training does; its noise search asks it too.
    # The model as a private run releases it: its last DP-SGD step, never an epoch chosen
    # on validation rows (which could pick an early epoch that memorised little).
    trained = train_model(split=audited, train=train, privacy=privacy,
                          primary_metric=primary_metric, stage="privacy_audit",
                          should_stop=cancellation.requested, select_on_validation=False)
    cancellation.check(trained.privacy)
    report = trained.privacy
    delta = (float(report["delta"]) if report.get("delta") is not None
             else resolve_delta(privacy.delta if privacy else None, len(audited.y_train)))
    if claimed_epsilon is None:
        claimed_epsilon = report.get("epsilon")
    bound = epsilon_lower_bound(canary_scores(trained.model, planted), planted.member,
                                delta=delta, confidence=confidence)
    return AuditResult(bound=bound, claimed_epsilon=claimed_epsilon, delta=delta,
                       canaries=canaries, privacy=report,
                       seconds=time.perf_counter() - started)
