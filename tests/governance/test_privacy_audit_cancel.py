"""A reviewer cancels an empirical privacy audit from the model card, as a run is cancelled.

Cancelled during its retraining, the audit takes no further step, stores no result, and the
dataset's ledger is charged exactly the steps it took: the entry's epsilon is Opacus' own
PRV accountant's for that noise, sample rate and step count (computed here independently),
far below the target its reservation held. A queued audit cancelled before it trains is
charged nothing and frees its reservation. Analysts (who cannot request an audit) and
other organisations cannot cancel one.

The audit runs in this process through the Celery task; a global optimizer step hook counts
the retraining's steps and clicks Cancel on the card while the third one runs.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from torch.optim.optimizer import register_optimizer_step_post_hook

from audits.models import AuditLogEntry
from governance.ledger import ledger_status
from governance.models import LedgerEntry, PrivacyAudit
from governance.privacy_audit import RESULT_KEY, cancel_privacy_audit, request_audit
from governance.tasks import audit_privacy
from training.progress import CancelCheck

pytestmark = pytest.mark.django_db


def cancel_url(audit: PrivacyAudit) -> str:
    return f"/governance/privacy-audits/{audit.pk}/cancel/"


def test_an_audit_cancelled_while_it_retrains_is_charged_the_steps_it_took(
    pending_model, reviewer, client, monkeypatch
):
    from opacus.accountants import PRVAccountant

    dataset = pending_model.run.dataset_version.dataset
    audit = request_audit(model_version=pending_model, user=reviewer)
    assert audit.status == PrivacyAudit.Status.QUEUED and audit.target_epsilon == 3.0
    assert ledger_status(dataset).reserved == pytest.approx(3.0)
    client.force_login(reviewer)
    card = client.get(f"/governance/models/{pending_model.pk}/card/").content.decode()
    assert f'action="{cancel_url(audit)}"' in card and "Cancel the audit" in card

    monkeypatch.setitem(CancelCheck.__init__.__kwdefaults__, "interval_s", 0.0)
    steps, answers = [], []

    def step(*_):
        steps.append(1)
        if len(steps) == 3:  # the reviewer clicks Cancel while the third step runs
            answers.append(client.post(cancel_url(audit)))

    handle = register_optimizer_step_post_hook(step)
    try:
        audit_privacy.apply(args=[audit.pk])  # the Celery task, in this process
    finally:
        handle.remove()

    assert answers[0].status_code == 302
    assert answers[0]["Location"] == f"/governance/models/{pending_model.pk}/card/"
    audit.refresh_from_db()
    assert len(steps) == 3  # no step after the cancel
    assert audit.status == PrivacyAudit.Status.CANCELLED and audit.cancel_requested
    # Nothing published: the card keeps no result of it.
    pending_model.run.refresh_from_db()
    assert RESULT_KEY not in (pending_model.run.result or {})
    # Charged the three steps it took, by the accountant, not its whole target.
    entry = LedgerEntry.objects.get(purpose="privacy_audit", audited_model=pending_model)
    assert audit.ledger_entry == entry
    assert entry.basis == LedgerEntry.Basis.ACCOUNTED and entry.steps == 3
    assert entry.run_status == "cancelled"
    accountant = PRVAccountant()
    accountant.history = [(entry.noise_multiplier, entry.sample_rate, 3)]
    independent = accountant.get_epsilon(delta=entry.delta, eps_error=0.01)
    assert entry.epsilon == pytest.approx(independent, rel=1e-9)
    assert 0 < entry.epsilon < 0.5 * audit.target_epsilon
    status = ledger_status(dataset)
    assert status.reserved == 0.0  # the reservation is freed
    assert status.spent.epsilon == pytest.approx(entry.epsilon)
    assert AuditLogEntry.objects.filter(action="privacy_audit.cancel_requested",
                                        actor=reviewer, object_id=str(audit.pk)).count() == 1
    ended = AuditLogEntry.objects.get(action="model.privacy_audit_cancelled")
    assert ended.detail["steps"] == 3 and ended.detail["charged_epsilon"] == entry.epsilon
    card = client.get(f"/governance/models/{pending_model.pk}/card/").content.decode()
    assert "Cancel the audit" not in card


def test_a_queued_audit_cancelled_is_charged_nothing_and_frees_its_reservation(
    pending_model, reviewer, analyst, other_reviewer, client
):
    dataset = pending_model.run.dataset_version.dataset
    audit = request_audit(model_version=pending_model, user=reviewer)
    # Analysts cannot request an audit, so they cannot cancel one; nor can another
    # organisation, which does not find it.
    client.force_login(analyst)
    assert client.post(cancel_url(audit)).status_code == 403
    card = client.get(f"/governance/models/{pending_model.pk}/card/").content.decode()
    assert "An empirical audit is queued" in card and "Cancel the audit" not in card
    with pytest.raises(PermissionDenied):
        cancel_privacy_audit(audit=audit, user=analyst)
    client.force_login(other_reviewer)
    assert client.post(cancel_url(audit)).status_code == 404
    with pytest.raises(PermissionDenied):
        cancel_privacy_audit(audit=audit, user=other_reviewer)
    audit.refresh_from_db()
    assert audit.status == PrivacyAudit.Status.QUEUED and not audit.cancel_requested

    client.force_login(reviewer)
    response = client.post(cancel_url(audit), follow=True)
    assert "Privacy audit cancelled before it trained" in response.content.decode()
    audit.refresh_from_db()
    assert audit.status == PrivacyAudit.Status.CANCELLED
    assert ledger_status(dataset).reserved == 0.0
    audit_privacy.apply(args=[audit.pk])  # its message, delivered after the cancel: no-op
    assert not LedgerEntry.objects.filter(purpose="privacy_audit").exists()
    assert AuditLogEntry.objects.filter(action="privacy_audit.cancelled").count() == 1
    with pytest.raises(ValueError, match="already cancelled"):
        cancel_privacy_audit(audit=audit, user=reviewer)
