"""Complaint sentiment: customer complaint narratives -> negative / neutral / positive.

Exported as ``COMPLAINT_SENTIMENT`` (a :class:`verticals.base.Problem`); the finance
vertical lists it in its ``problems``.

Synthetic complaints (:func:`complaint_narratives`)
---------------------------------------------------
One row per complaint, shaped like a public complaint-database export:
``complaint_id``, ``product`` (credit_card, mortgage, checking, student_loan, auto_loan),
``narrative`` (free text: an optional opening about the product, what happened, how the
customer feels and a closing, each drawn from several wordings of the same thing, with
negations such as "not satisfied" or "no complaints" and ~3 % of words mistyped),
``older_consumer`` ("yes" for 25 %, the "Older American" tag) and the recorded
``sentiment``: negative (~55 %), neutral (~30 %: questions and factual reports) or
positive (~15 %: thanks after a resolution). 5 % of labels are flipped to a neighbouring
class (reviewers disagree).

The planted disparity: older consumers often write politely and indirectly ("I would be
grateful if you could look into this: ...") even when the complaint is serious. 50 % of
their negative narratives use such hedged phrasing (vs 10 % for others), which reads like a
neutral enquiry. The audit shows a lower accuracy and macro F1 for ``older_consumer =
yes``: their complaints risk being under-prioritised.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

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
from verticals.base import Problem
from verticals.synthetic_text import add_typos, join_within, pick

SENTIMENTS = ("negative", "neutral", "positive")
SENTIMENT_SHARES = (0.55, 0.30, 0.15)
OLDER_SHARE = 0.25
PLANTED_HEDGING = {"yes": 0.50, "no": 0.10}
LABEL_NOISE = 0.05
TYPO_RATE = 0.03
NARRATIVE_MAX_CHARS = 400

PRODUCTS = {
    "credit_card": ("my credit card", "the card account", "my card statement", "my Visa card",
                    "the rewards card"),
    "mortgage": ("my mortgage", "the home loan", "my escrow account", "the mortgage servicer",
                 "our house payments"),
    "checking": ("my checking account", "the debit card", "my current account",
                 "my bank account", "the joint account"),
    "student_loan": ("my student loan", "the loan servicer", "my repayment plan",
                     "my federal loans", "the income driven plan"),
    "auto_loan": ("my car loan", "the auto finance account", "my vehicle loan",
                  "the lease on my car", "my auto payments"),
}
OPENERS = ("Regarding {product}:", "I am writing about {product}.", "About {product}:",
           "This concerns {product}.", "{product_cap} -", "Re {product}.",
           "I have a question about {product}.", "")
# What happened, by sentiment: each entry is one kind of event in several wordings.
EVENTS = {
    "negative": (
        ("they charged me a late fee even though the payment was made on time",
         "a late fee was applied although I paid before the due date",
         "I got hit with a penalty for a payment that arrived early"),
        ("they froze the account without any explanation", "my account was locked for no "
         "reason and I cannot pay my bills", "the bank blocked my card while I was abroad "
         "and left me stranded"),
        ("they reported a wrong balance to the credit bureaus and refuse to correct it",
         "my credit report shows a debt that is not mine", "a paid off loan still shows as "
         "delinquent and my score dropped"),
        ("a collector keeps calling me about a debt I do not owe", "debt collectors ring me "
         "at work every day, this is harassment", "I get threatening calls about an account "
         "I never opened"),
        ("they lost my paperwork three times and the rate lock expired", "the documents I "
         "sent were misplaced again", "my modification application has been lost twice"),
        ("there was an unauthorized withdrawal and they denied my dispute", "someone took "
         "money from my account and the bank says it is my fault", "fraudulent charges were "
         "never refunded"),
        ("they added hidden charges to my bill", "fees appeared that nobody told me about",
         "the interest is far higher than what I signed for"),
        ("my payments are not being applied to the principal", "they keep misapplying my "
         "payments", "the extra money I paid vanished"),
        ("I was put on hold for two hours and then disconnected", "nobody ever calls me back",
         "I have called six times and no one can help"),
    ),
    "neutral": (
        ("they sent a letter about a change in terms and I would like to understand it",
         "I received a notice about new terms and want to know what changes",
         "can someone explain the updated agreement"),
        ("they asked me to provide documents and I want to know which ones are needed",
         "what paperwork do I need to send for the review", "please list the forms "
         "required"),
        ("the servicing moved to another company, please confirm the new address",
         "my loan was transferred and I need the new payment details", "who do I pay now "
         "that the account was sold"),
        ("there is a pending transaction and I am asking when it will post", "how long "
         "does a transfer usually take to clear", "a deposit shows as pending since Monday"),
        ("they offer a payment plan and I have a question about the interest", "I am "
         "considering refinancing and want to know the options", "how is the interest "
         "calculated on the new plan"),
        ("the statement date changed and I want to confirm the due date", "I need a copy "
         "of last year's statements for my taxes", "please send me the payoff amount"),
    ),
    "positive": (
        ("they resolved my dispute quickly and refunded the fee",
         "the charge was reversed within two days", "they sorted out the billing error "
         "right away"),
        ("the agent helped me set up a hardship plan and was very kind", "the representative "
         "was patient and explained everything", "a lovely agent walked me through the "
         "options"),
        ("they fixed the reporting error within a week", "my credit report was corrected "
         "promptly", "the mistake was cleared up faster than I expected"),
        ("they waived the charge after I explained", "the late fee was removed as a "
         "courtesy", "they credited my account back without any fuss"),
        ("they answered all my questions clearly and followed up as promised", "the branch "
         "manager called back the same day", "the online chat solved it in minutes"),
    ),
}
FEELINGS = {
    "negative": ("This is unacceptable.", "I am furious.", "I am fed up with this bank.",
                 "Absolutely ridiculous.", "Worst customer service I have ever had.",
                 "Nobody has helped me.", "I am not satisfied with their answer.",
                 "It is still not resolved after three months.", "I feel cheated.", ""),
    "neutral": ("I just need some information.", "There is no problem so far, only a "
                "question.", "Nothing urgent.", "", ""),
    "positive": ("Great experience overall.", "I could not be happier.", "No complaints "
                 "at all.", "Really impressed.", "Very pleased with the service.", ""),
}
CLOSINGS = {
    "negative": ("I want this fixed now.", "I am filing this complaint.", "I expect a refund.",
                 "I will take this to a lawyer.", "Fix this immediately.", ""),
    "neutral": ("Please advise.", "Thank you for clarifying.", "I look forward to your answer.",
                "Kind regards.", ""),
    "positive": ("Thanks again.", "Much appreciated.", "Thank you so much.", "Keep it up.", ""),
}
# Polite, indirect wordings of serious problems (the planted disparity).
HEDGES = ("I would be grateful if you could look into this: {issue}",
          "I wonder whether someone might have a look, as {issue}",
          "Perhaps there has been a misunderstanding, as {issue}",
          "I would appreciate some help, as {issue}",
          "I was wondering if you could check why {issue}",
          "I would be most grateful for your help: {issue}")
HEDGED_ISSUES = ("there is a charge on {product} that I do not recognise",
                 "the balance of {product} seems different from what I paid",
                 "my payments on {product} do not seem to be applied",
                 "I received a letter saying {product} is in default",
                 "money seems to have left {product} without my permission",
                 "the fees on {product} have gone up quite a lot")
HEDGE_CLOSINGS = ("Thank you for your time.", "Kind regards.", "With many thanks.",
                  "I hope this is not too much trouble.", "")


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _narrative(rng: np.random.Generator, label: str, product: str, *, hedged: bool) -> str:
    phrase = pick(rng, PRODUCTS[product])
    if hedged:
        issue = pick(rng, HEDGED_ISSUES).format(product=phrase)
        parts = [(pick(rng, HEDGES).format(issue=issue) + ".", False),
                 (pick(rng, HEDGE_CLOSINGS), True)]
    else:
        opener = pick(rng, OPENERS).format(product=phrase, product_cap=_capitalised(phrase))
        kinds = EVENTS[label]
        event = pick(rng, kinds[int(rng.integers(len(kinds)))])
        parts = [(opener, True), (_capitalised(event) + ".", False),
                 (pick(rng, FEELINGS[label]), True), (pick(rng, CLOSINGS[label]), True)]
    return add_typos(rng, join_within(parts, max_chars=NARRATIVE_MAX_CHARS), TYPO_RATE)


def complaint_narratives(n_rows: int, seed: int, *, planted_hedging: dict | None = None
                         ) -> pd.DataFrame:
    """``n_rows`` synthetic complaints with recorded sentiment (see the module docstring)."""
    hedging = planted_hedging if planted_hedging is not None else PLANTED_HEDGING
    rng = np.random.default_rng(seed)
    older = np.where(rng.random(n_rows) < OLDER_SHARE, "yes", "no")
    products = rng.choice(list(PRODUCTS), n_rows)
    truth = rng.choice(SENTIMENTS, n_rows, p=SENTIMENT_SHARES)
    narratives = [
        _narrative(rng, label, product,
                   hedged=bool(label == "negative" and rng.random() < hedging[old]))
        for product, label, old in zip(products, truth, older, strict=True)
    ]
    recorded = truth.astype(object).copy()
    noise = rng.random(n_rows) < LABEL_NOISE
    neighbour = {"negative": "neutral", "neutral": "negative", "positive": "neutral"}
    recorded[noise] = [neighbour[label] for label in recorded[noise]]
    return pd.DataFrame({
        "complaint_id": [f"C{seed:03d}-{i:06d}" for i in range(n_rows)],
        "product": products, "narrative": narratives, "older_consumer": older,
        "sentiment": recorded,
    })


COMPLAINT_SENTIMENT_SPEC = ProblemSpec(
    key="complaint_sentiment",
    name="Complaint sentiment",
    description=(
        "Reads customer complaint narratives and labels their sentiment (negative, neutral, "
        "positive) so serious complaints are prioritised; audited by consumer group."
    ),
    task_type=TaskType.TEXT_CLASSIFICATION,
    hints=(
        RoleHint(role=ColumnRole.TARGET, names=("sentiment", "label", "tone", "class",
                                                "polarity", "target"), required=True),
        RoleHint(role=ColumnRole.TEXT, names=("narrative", "complaint", "complaint_text",
                                              "consumer_complaint_narrative", "text", "review",
                                              "comment", "message", "body")),
        RoleHint(role=ColumnRole.ID, names=("complaint_id", "case_id", "ticket_id", "id")),
    ),
    sensitive_hints=("older_consumer", "older_american", "age", "sex", "gender",
                     "servicemember"),
    metrics=("macro_f1", "accuracy", "weighted_f1"),
    primary_metric="macro_f1",
    baseline="tfidf_logistic_regression",
    model_family="text_encoder",
    privacy_unit=PrivacyUnit("customer"),
    privacy=PrivacyConfig(enabled=True, target_epsilon=8.0),
    fairness=FairnessPolicy(min_group_size=20, favourable=FavourableOutcome(
        positive=True, text="routed as the predicted class")),
    # Non-private: the last 2 MiniLM layers (lr 3e-4) + head; private: DP-SGD on the head
    # over frozen sentence embeddings (ml_core/families/text/ says why).
    train=TrainConfig(epochs=8, batch_size=16, learning_rate=3e-4, patience=3, max_length=64),
    retrain_cron="0 4 * * 1",
    min_rows=60,
)

SAMPLE_MAPPING = ColumnMapping(
    target="sentiment", sensitive=("older_consumer",), id="complaint_id",
    roles=(("text", "narrative"),),
)

GUIDE = """\
## Complaint sentiment

Labels each complaint narrative as **negative**, **neutral** or **positive**, so the
serious ones reach a person first.

### What to upload
- One row per complaint: the **narrative** (free text) and the **sentiment** your
  reviewers gave it (any labels: two or more classes).
- Optional: product, channel, and consumer tags you must audit (e.g. *Older American*,
  *Servicemember*). Tags are audited, never read by the model.
- A few hundred labelled complaints at least; every label needs several examples.
- Remove account numbers and names first: the model reads the text.

### How it works
A sentence encoder (all-MiniLM-L6-v2, shipped with the platform, no internet) reads the
text. Privacy is on by default (Opacus DP-SGD, epsilon 8 per training run): the private
model trains a small classifier on the frozen sentence embeddings (fine-tuning whole layers
under DP noise learns almost nothing from a few thousand complaints). Without privacy, the
encoder's last 2 layers are fine-tuned with the classifier.

### Reading the results
- **Macro F1** (primary) averages the F1 score of each label, so a rare "positive" class
  counts as much as the common "negative" one. **Accuracy** is the share labelled right.
- Both sit beside a **TF-IDF + logistic regression** baseline (word counts): on short,
  formulaic text the baseline is hard to beat; the encoder helps on paraphrases.
- The **confusion matrix** shows which labels are confused; **per-class F1** shows where.
- The **fairness** panel shows accuracy and macro F1 per consumer group: a lower score for
  older consumers means their complaints are misread more often (polite wording of serious
  problems is a known cause).
"""

COMPLAINT_SENTIMENT = Problem(
    spec=COMPLAINT_SENTIMENT_SPEC,
    sample_data=complaint_narratives,
    sample_mapping=SAMPLE_MAPPING,
    guide=GUIDE,
)
