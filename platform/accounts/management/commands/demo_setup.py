"""``manage.py demo_setup``: the demo organisation, its three users and a validated dataset,
and a platform operator for Django's admin site.

Idempotent: a second run changes nothing but resetting the demo passwords to the printed
ones. The dataset is the finance vertical's synthetic credit applications (with a planted,
documented disparity against foreign workers), uploaded and mapped through the same
services as a real upload, so the demo shows the real path.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.management.base import BaseCommand

DEMO_ORGANISATION = "Demo Bank"
DEMO_ORGANISATION_SLUG = "demo-bank"
DEMO_DATASET_NAME = "Credit applications (demo)"
DEMO_VERTICAL = "finance"
DEMO_PROBLEM = "credit_risk"
DEMO_ROWS = 2000
DEMO_SEED = 7


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    role: str


# Fixed on purpose: the demo prints them and the README lists them. Never use in production.
DEMO_USERS = (
    DemoUser("analyst", "tessera-analyst", "analyst"),
    DemoUser("reviewer", "tessera-reviewer", "reviewer"),
    DemoUser("admin", "tessera-admin", "admin"),
)
# Django's admin site is for the people who run the platform, not for an organisation's
# admin (who would see every organisation's data there): a separate account, in no
# organisation, that signs in at /admin/ only.
DEMO_OPERATOR = DemoUser("operator", "tessera-operator", "platform operator, /admin/")


class Command(BaseCommand):
    help = "Create the demo organisation, its analyst/reviewer/admin users and a demo dataset."

    def handle(self, *args, **options) -> None:
        organisation = ensure_organisation()
        users = {demo.username: ensure_user(demo, organisation) for demo in DEMO_USERS}
        ensure_operator(DEMO_OPERATOR)
        version, created = ensure_demo_dataset(analyst=users["analyst"])
        state = "uploaded" if created else "already present"
        self.stdout.write(
            f"Dataset {DEMO_DATASET_NAME!r} v{version.number} {state}: {version.status}"
            f" ({DEMO_ROWS} rows, {DEMO_VERTICAL}/{DEMO_PROBLEM})"
        )
        if version.errors:
            self.stdout.write(self.style.WARNING(f"Validation errors: {version.errors}"))
        self.stdout.write(self.style.SUCCESS(f"Organisation {organisation.name!r}; demo users:"))
        for line in credential_lines():
            self.stdout.write(line)


def credential_lines(indent: str = "  ") -> list[str]:
    return [f"{indent}{u.username:<9} password {u.password:<17} ({u.role})"
            for u in (*DEMO_USERS, DEMO_OPERATOR)]


def ensure_organisation():
    from accounts.models import Organisation

    organisation, _ = Organisation.objects.get_or_create(
        slug=DEMO_ORGANISATION_SLUG, defaults={"name": DEMO_ORGANISATION}
    )
    return organisation


def ensure_user(demo: DemoUser, organisation):
    from django.contrib.auth import get_user_model

    from accounts.models import Membership

    user, _ = get_user_model().objects.get_or_create(
        username=demo.username, defaults={"email": f"{demo.username}@demo-bank.example"}
    )
    # No organisation's user gets Django's admin site (DEMO_OPERATOR does).
    user.is_staff = user.is_superuser = False
    user.set_password(demo.password)
    user.save()
    Membership.objects.update_or_create(
        user=user, defaults={"organisation": organisation, "role": demo.role}
    )
    return user


def ensure_operator(demo: DemoUser):
    """The platform operator: a superuser with no membership, so the app's pages, scoped to
    an organisation, are closed to them and the admin site is theirs."""
    from django.contrib.auth import get_user_model

    from accounts.models import Membership

    user, _ = get_user_model().objects.get_or_create(
        username=demo.username, defaults={"email": f"{demo.username}@tessera.example"})
    user.is_staff = user.is_superuser = True
    user.set_password(demo.password)
    user.save()
    Membership.objects.filter(user=user).delete()
    return user


def ensure_demo_dataset(*, analyst):
    """The demo dataset's latest version, uploading and mapping it when there is none."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from ingestion.models import Dataset
    from ingestion.services import confirm_mapping, upload_dataset
    from verticals.finance.demo_data import credit_applications
    from verticals.registry import get_problem

    organisation = analyst.membership.organisation
    dataset = Dataset.objects.filter(
        organisation=organisation, name=DEMO_DATASET_NAME,
        vertical=DEMO_VERTICAL, problem=DEMO_PROBLEM,
    ).first()
    version = dataset.versions.order_by("-number").first() if dataset is not None else None
    created = version is None
    if created:
        frame = credit_applications(DEMO_ROWS, seed=DEMO_SEED)
        upload = SimpleUploadedFile(
            "credit_applications_demo.csv", frame.to_csv(index=False).encode("utf-8"),
            content_type="text/csv",
        )
        version = upload_dataset(
            user=analyst, vertical=DEMO_VERTICAL, problem=DEMO_PROBLEM, file=upload,
            name=DEMO_DATASET_NAME, dataset=dataset,
        )
    # Also finishes a version left pending by an interrupted earlier run.
    if version.status == version.Status.PENDING:
        mapping = get_problem(DEMO_VERTICAL, DEMO_PROBLEM).sample_mapping
        version = confirm_mapping(version=version, user=analyst, mapping=mapping)
    return version, created
