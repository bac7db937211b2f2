"""Results stored before charts declared their kind get one, so the results page can render
every run by kind (training.result_display.RENDERERS). The keys are read here once, for old
rows only; new results carry the kind their family declares."""

from django.db import migrations

# In the order the page used to try them: the first whose keys are present wins.
LEGACY_KINDS = (
    ("forecast_vs_actual", ("forecast",)),
    ("top_k", ("top_k", "exposure")),
    ("next_skill", ("recommendations",)),
    ("mastery", ("mastery",)),
    ("rul_curve", ("rul",)),
    ("confusion_matrix", ("confusion",)),
    ("precision_recall", ("confusion_matrix", "pr_curve")),
)


def stamp_kinds(apps, schema_editor):
    TrainingRun = apps.get_model("training", "TrainingRun")
    for run in TrainingRun.objects.exclude(result={}).iterator():
        result = run.result if isinstance(run.result, dict) else {}
        stored = result.get("charts")
        if not isinstance(stored, dict) or not stored or "kind" in stored:
            continue
        kind = next((kind for kind, keys in LEGACY_KINDS if any(k in stored for k in keys)),
                    None)
        if kind is not None:
            run.result = {**result, "charts": {"kind": kind, **stored}}
            run.save(update_fields=["result"])


class Migration(migrations.Migration):

    dependencies = [
        ("training", "0003_run_lease"),
    ]

    operations = [
        migrations.RunPython(stamp_kinds, migrations.RunPython.noop),
    ]
