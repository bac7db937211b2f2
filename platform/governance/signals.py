"""Signal receivers: a drift check for each newly validated dataset version of a problem
that has a champion (queued on commit; the default queue)."""

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from ingestion.models import DatasetVersion
from training.models import ModelVersion


@receiver(post_save, sender=DatasetVersion, dispatch_uid="governance_drift_on_validated")
def drift_on_validated(sender, instance: DatasetVersion, **kwargs) -> None:
    if instance.status != DatasetVersion.Status.VALIDATED:
        return
    dataset = instance.dataset
    has_champion = ModelVersion.objects.filter(
        organisation_id=dataset.organisation_id, vertical=dataset.vertical,
        problem=dataset.problem, status=ModelVersion.Status.CHAMPION).exists()
    if not has_champion:
        return
    from governance.tasks import check_drift

    version_id = instance.pk
    transaction.on_commit(lambda: check_drift.apply_async(args=[version_id], queue="default"))
