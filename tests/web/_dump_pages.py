import pytest
from django.urls import reverse

from tests.web.factories import make_succeeded_run
from training.models import TrainingRun

pytestmark = pytest.mark.django_db
OUT = "/tmp/helperF-pages"


def test_dump(client, analyst, reviewer, validated_version):
    run = make_succeeded_run(version=validated_version, user=analyst)
    running = TrainingRun.objects.create(
        organisation=validated_version.dataset.organisation, dataset_version=validated_version,
        vertical="finance", problem="credit_risk", status="running", stage="training",
        epoch=4, total_epochs=10, loss=0.55, val_metric=0.71, epsilon_spent=1.4,
        history=[{"epoch": i, "loss": 0.7 - i * 0.04, "val_metric": 0.6 + i * 0.03} for i in range(1, 5)],
        created_by=analyst)
    client.force_login(reviewer)
    pages = {
        "dashboard": reverse("dashboard"), "catalog": reverse("catalog"),
        "problem": reverse("problem", args=["finance", "credit_risk"]),
        "upload": reverse("dataset_upload", args=["finance", "credit_risk"]),
        "version": reverse("dataset_version", args=[validated_version.pk]),
        "run": reverse("run_detail", args=[run.pk]), "running": reverse("run_detail", args=[running.pk]),
        "report": reverse("run_report", args=[run.pk]),
        "review": reverse("review_detail", args=[run.model_version.pk]),
        "queue": reverse("review_queue"), "audit": reverse("audit_log"),
        "runs": reverse("run_list"), "datasets": reverse("dataset_list"),
    }
    for name, url in pages.items():
        html = client.get(url).content.decode()
        html = html.replace('/static/', 'file:///work/main/platform/static/')
        open(f"{OUT}/{name}.html", "w").write(html)
    from ingestion import services
    from ingestion.models import DatasetVersion
    import io
    from django.core.files.uploadedfile import SimpleUploadedFile
    from tests.conftest import finance_frame
    buf = io.StringIO(); finance_frame(100).to_csv(buf, index=False)
    v = services.upload_dataset(user=analyst, vertical="finance", problem="credit_risk",
                                file=SimpleUploadedFile("x.csv", buf.getvalue().encode()), name="x")
    client.force_login(analyst)
    html = client.get(reverse("dataset_mapping", args=[v.pk])).content.decode()
    open(f"{OUT}/mapping.html", "w").write(html.replace('/static/', 'file:///work/main/platform/static/'))
