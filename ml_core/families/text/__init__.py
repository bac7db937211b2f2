"""Text classification: free text -> one of a few labels (note triage, complaint sentiment).

Steps: find the text and label columns -> stratified train/validation/test split ->
TF-IDF + logistic regression baseline -> tokenise -> run the frozen lower encoder once
over every row (cached) -> sentence embeddings (mean pooling over real tokens, L2
normalisation, centred on public reference text) -> non-private: fine-tune the top 2
transformer layers and a linear head (class-weighted loss); private: DP-SGD on the linear
head alone over the whole frozen encoder's embeddings, plus the fine-tuned non-private twin
for comparison -> macro F1 and accuracy on the test split -> fairness per sensitive group
-> save.

Progress stages: ``preparing``, ``baseline``, ``encoding``, ``training``,
``training_twin`` (private runs), ``auditing``, ``saving``.

The package, by concern: :mod:`.family` (columns, validation, the split, the run's hooks,
save/load/predict, the family's registration), :mod:`.options` (:class:`TextEncoderOptions`),
:mod:`.caches` (the frozen encoder's states, computed once), :mod:`.training` (the loop glue and
``train_top``), :mod:`.audit` (the metrics and the multi-class fairness audit),
:mod:`.fresh_rows` (the seed-study helper). Everything other modules use is importable
from here.
"""

from ml_core.families.text.audit import audit_text
from ml_core.families.text.caches import (
    _STATE_CACHE,
    EncodedRows,
    _embedding_rows,
    cached_lower_states,
    encoder_memo,
    encoding_precision,
    lower_states,
)
from ml_core.families.text.family import (
    METADATA_FILE,
    MODEL_FAMILY,
    TEXT_METRICS,
    WEIGHTS_FILE,
    LoadedTextModel,
    TextEncoderFamily,
    TextHooks,
    load,
    predict,
    run,
    save,
    text_column,
    text_metrics,
    tfidf_baseline,
    validate,
)
from ml_core.families.text.fresh_rows import compare_on_fresh_rows
from ml_core.families.text.options import TextEncoderOptions
from ml_core.families.text.training import (
    Schedule,
    TrainedTop,
    WeightedCrossEntropy,
    class_weights,
    linear_probe,
    predict_probabilities,
    train_top,
)

__all__ = [
    "METADATA_FILE", "MODEL_FAMILY", "TEXT_METRICS", "WEIGHTS_FILE", "_STATE_CACHE",
    "EncodedRows", "LoadedTextModel", "Schedule", "TextEncoderFamily", "TextEncoderOptions",
    "TextHooks", "TrainedTop", "WeightedCrossEntropy", "_embedding_rows", "audit_text",
    "cached_lower_states", "class_weights", "compare_on_fresh_rows", "encoder_memo",
    "encoding_precision",
    "linear_probe", "load", "lower_states", "predict", "predict_probabilities", "run", "save",
    "text_column", "text_metrics", "tfidf_baseline", "train_top", "validate",
]
