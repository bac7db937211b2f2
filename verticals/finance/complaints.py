"""Complaint sentiment: customer complaint narratives -> negative / neutral / positive.

Exported as ``COMPLAINT_SENTIMENT`` (a :class:`verticals.base.Problem`); the finance
vertical lists it in its ``problems``.

Synthetic complaints (:func:`complaint_narratives`)
---------------------------------------------------
One row per complaint, shaped like a public complaint-database export:
``complaint_id``, ``product`` (credit_card, mortgage, checking, student_loan, auto_loan),
``narrative`` (free text from templates: an opening about the product, an issue or
a compliment, and a closing), ``older_consumer`` ("yes" for 25 %, the "Older American"
tag) and the recorded ``sentiment``: negative (~55 %), neutral (~30 %: questions and
factual reports) or positive (~15 %: thanks after a resolution). 5 % of labels are
flipped to a neighbouring class (reviewers disagree).

The planted disparity: older consumers often write politely and indirectly ("I would be
grateful if you could look into ...") even when the complaint is serious. 50 % of their
negative narratives use such hedged phrasing (vs 10 % for others), which reads like a
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
    PrivacyConfig,
    ProblemSpec,
    RoleHint,
    TaskType,
    TrainConfig,
)
from verticals.base import Problem

SENTIMENTS = ("negative", "neutral", "positive")
SENTIMENT_SHARES = (0.55, 0.30, 0.15)
OLDER_SHARE = 0.25
PLANTED_HEDGING = {"yes": 0.50, "no": 0.10}
LABEL_NOISE = 0.05

PRODUCTS = {
    "credit_card": ("my credit card", "the card account", "my card statement"),
    "mortgage": ("my mortgage", "the home loan", "my escrow account"),
    "checking": ("my checking account", "the debit card", "my current account"),
    "student_loan": ("my student loan", "the loan servicer", "my repayment plan"),
    "auto_loan": ("my car loan", "the auto finance account", "my vehicle loan"),
}
ISSUES = {
    "negative": (
        "charged me a late fee even though the payment was made on time",
        "froze the account without any explanation and nobody calls back",
        "reported a wrong balance to the credit bureau and refuses to correct it",
        "keeps calling me about a debt I do not owe, this is harassment",
        "lost my paperwork three times and the rate lock expired",
        "took an unauthorized withdrawal and denied my dispute",
        "added hidden charges and the agent was rude and dismissive",
    ),
    "neutral": (
        "sent a letter about a change in terms and I would like to understand it",
        "asked me to provide documents, I want to know which ones are needed",
        "transferred the servicing to another company, please confirm the new address",
        "shows a pending transaction and I am asking when it will post",
        "offers a payment plan and I have a question about the interest",
        "changed the statement date, I am writing to confirm the due date",
    ),
    "positive": (
        "resolved my dispute quickly and refunded the fee, thank you",
        "helped me set up a hardship plan, the agent was very kind",
        "fixed the reporting error within a week, I appreciate it",
        "waived the charge after I explained, excellent service",
        "answered all my questions clearly and followed up as promised",
    ),
}
HEDGED_NEGATIVE = (
    "I would be grateful if you could look into a charge on {product} that I do not recognise",
    "I wonder whether someone might review {product}, as the balance seems different",
    "Perhaps there has been a misunderstanding with {product}; I have not received a reply",
    "I would appreciate some help with {product}, the payments do not seem to be applied",
)
OPENERS = ("Regarding {product}:", "I am writing about {product}.", "About {product}:",
           "This concerns {product}.", "{product_cap} -")
CLOSINGS = {
    "negative": ("I want this fixed now.", "This is unacceptable.", "I am filing this complaint.",
                 "I expect a refund."),
    "neutral": ("Please advise.", "Thank you for clarifying.", "I look forward to your answer.",
                ""),
    "positive": ("Thanks again.", "Great experience overall.", "Much appreciated.", ""),
}


def complaint_narratives(n_rows: int, seed: int, *, planted_hedging: dict | None = None
                         ) -> pd.DataFrame:
    """``n_rows`` synthetic complaints with recorded sentiment (see the module docstring)."""
    hedging = planted_hedging if planted_hedging is not None else PLANTED_HEDGING
    rng = np.random.default_rng(seed)
    older = np.where(rng.random(n_rows) < OLDER_SHARE, "yes", "no")
    products = rng.choice(list(PRODUCTS), n_rows)
    truth = rng.choice(SENTIMENTS, n_rows, p=SENTIMENT_SHARES)
    narratives = []
    for product, label, old in zip(products, truth, older, strict=True):
        phrase = str(rng.choice(PRODUCTS[product]))
        if label == "negative" and rng.random() < hedging[old]:
            body = str(rng.choice(HEDGED_NEGATIVE)).format(product=phrase) + "."
            narratives.append(body)
            continue
        opener = str(rng.choice(OPENERS)).format(product=phrase, product_cap=phrase.capitalize())
        issue = f"The company {rng.choice(ISSUES[label])}."
        closing = str(rng.choice(CLOSINGS[label]))
        narratives.append(" ".join(part for part in (opener, issue, closing) if part))
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
    privacy=PrivacyConfig(enabled=True, target_epsilon=8.0),
    fairness=FairnessPolicy(min_group_size=20),
    # Last MiniLM layer + head; see ml_core/families/text.py for the cost on a CPU.
    train=TrainConfig(epochs=4, batch_size=32, learning_rate=2e-3, patience=2, max_length=64),
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
text; its last layer and a small classifier are fine-tuned on your labels, with
differential privacy on by default (Opacus DP-SGD, epsilon 8 per training run).

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
