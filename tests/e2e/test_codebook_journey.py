"""A headerless, coded file made readable in a real browser: the analyst uploads a
german.data-style file, names its columns and labels one code inline, uploads a codebook
for the rest, maps by the new names, trains with a real Celery worker, and reads the new
names on the dataset page, the fairness report and the model card; laptop and tablet
screenshots and an axe-core check on each of those pages."""

from __future__ import annotations

import re

import pytest

from tests.e2e.german_like import german_like_rows
from tests.support.worker import celery_worker

pytestmark = [pytest.mark.e2e, pytest.mark.worker, pytest.mark.slow,
              pytest.mark.django_db(transaction=True)]

RUN_TIMEOUT_MS = 240_000
CODEBOOK = (
    b"Column,Code,Label,Notes\n"
    b"column_9,A91,\"male, divorced or separated\",from german.doc\n"
    b"column_9,A92,\"female, divorced, separated or married\",\n"
    b"column_9,A94,\"male, married or widowed\",\n"
    b"column_9,A95,\"female, single\",\n"
    b"credit outcome,1,good,\n"
    b"credit outcome,2,bad,\n"
)


def test_analyst_names_columns_labels_codes_and_reads_them_everywhere(journey, analyst,
                                                                        tmp_path):
    from training.models import TrainingRun

    page = journey.page
    found: dict[str, list[str]] = {}
    with celery_worker(log=tmp_path / "worker.log"):
        journey.sign_in("alice", "pw-alice")
        journey.goto("/datasets/upload/finance/credit_risk/")
        page.get_by_label("Name").fill("German credit with a codebook")
        page.get_by_label("File", exact=True).set_input_files(files=[{
            "name": "german.data", "mimeType": "text/plain",
            "buffer": german_like_rows(n_rows=800, seed=3)}])
        page.get_by_text("Advanced reading options").click()
        page.get_by_label("File has no header row").check()
        page.get_by_role("button", name="Upload").click()
        page.get_by_role("heading", name=re.compile("Map the columns")).wait_for()

        # Inline: three names, and one code of column_9 labelled.
        names = page.locator("section", has=page.get_by_role("heading", name="Names and codes"))
        names.get_by_label("Display name of column_9").fill("personal status and sex")
        names.get_by_label("Display name of column_13").fill("age in years")
        names.get_by_label("Display name of column_21").fill("credit outcome")
        row = names.locator("tr", has=page.locator("th code", has_text=re.compile("^column_9$")))
        row.locator("summary").click()
        row.get_by_label("A93", exact=True).fill("male, single")
        journey.shot("names-typed")
        names.get_by_role("button", name="Save names and labels").click()
        page.get_by_text("Names and labels saved").wait_for()

        # A codebook file for the other codes (its header in any case, a notes column).
        names = page.locator("section", has=page.get_by_role("heading", name="Names and codes"))
        names.get_by_label("Codebook file (CSV)").set_input_files(files=[{
            "name": "german-codebook.csv", "mimeType": "text/csv", "buffer": CODEBOOK}])
        names.get_by_role("button", name="Upload the codebook").click()
        page.get_by_text("Names and labels saved").wait_for()
        journey.check_widths("mapping-with-names", found)

        # The mapping reads the new names; what it stores are the file's.
        page.get_by_label("credit outcome", exact=True).select_option("target")
        page.get_by_label("personal status and sex", exact=True).select_option("sensitive")
        page.get_by_label("age in years", exact=True).select_option("sensitive")
        page.get_by_label("Positive label").fill("2")
        page.get_by_role("button", name="Confirm mapping and validate").click()
        page.get_by_text("Mapping confirmed: the data is valid for training.").wait_for()
        page.get_by_role("heading", name="Groups of personal status and sex").wait_for()
        assert "male, single" in page.locator("main").inner_text()
        journey.check_widths("dataset-version", found)

        training = page.locator("section.card", has=page.get_by_role(
            "heading", name="Train a model"))
        training.get_by_label("Target epsilon").fill("3")
        training.get_by_label("Epochs").fill("3")
        training.get_by_role("button", name="Start training").click()
        page.wait_for_url(re.compile(r"/runs/\d+/$"))
        run_id = int(re.search(r"/runs/(\d+)/$", page.url).group(1))
        page.get_by_role("heading", name="Metrics on the held-out test split").wait_for(
            timeout=RUN_TIMEOUT_MS)
        run = TrainingRun.objects.get(pk=run_id)
        assert run.status == TrainingRun.Status.SUCCEEDED, run.error

        page.get_by_role("link", name="Open the fairness report").click()
        page.get_by_role("heading", name=re.compile(
            "Sensitive attribute: personal status and sex")).wait_for()
        page.get_by_role("heading", name=re.compile("Sensitive attribute: age in years")
                         ).wait_for()
        report = page.locator("main").inner_text()
        assert "male, single" in report and "female, single" in report
        assert "Sensitive attribute: column_9" not in report
        journey.check_widths("fairness-report", found)

        journey.goto(f"/governance/models/{run.model_version.pk}/card/")
        page.get_by_role("heading", level=1).first.wait_for()
        card = page.locator("main").inner_text()
        assert "personal status and sex" in card and "male, single" in card
        journey.check_widths("model-card", found)

    # Presentation only: the mapping and the stored report keep the file's names and codes.
    run.refresh_from_db()
    assert run.dataset_version.mapping["sensitive"] == ["column_9", "column_13"]
    assert run.dataset_version.mapping["target"] == "column_21"
    assert set(run.fairness) == {"column_9", "column_13"}
    assert set(run.fairness["column_9"]["by_group"]) <= {"A91", "A92", "A93", "A94", "A95"}
    assert run.dataset_version.value_labels["column_9"]["A93"] == "male, single"
    assert run.dataset_version.value_labels["column_21"] == {"1": "good", "2": "bad"}
    assert not found, found
    journey.assert_clean()
