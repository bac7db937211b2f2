"""API fuzzing: schemathesis generates requests from /api/v1/schema/ (data that fits the
schema and data that does not) and sends them in-process to the WSGI application,
authenticated with an admin's token, over both organisations' objects
(tests/reliability/_objects.py).

Every answer must be no 5xx, with a status code, content type, headers and body that the
schema documents. Path ids are drawn half the time from rows that exist (the admin's
organisation's and the other organisation's), so operations run on real objects too, not
only on ids no row has. A bounded number of examples per operation and mode keeps it under
a minute. (Driven with Hypothesis directly: schemathesis' pytest plugin does not run under
pytest 9.2.)
"""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.reliability._objects import (  # noqa: F401 - fixtures
    serving_artifact_fixture,
    worlds_fixture,
)

pytestmark = pytest.mark.django_db

# Per operation: valid data, then data that breaks the schema.
EXAMPLES = {GenerationMode.POSITIVE: 10, GenerationMode.NEGATIVE: 10}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


@pytest.fixture
def wsgi_app():
    """The WSGI application; as in Django's test client, a request does not close the test's
    database connection (the test's transaction holds the objects)."""
    from config.wsgi import application

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield application
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def cases(operation, mode: GenerationMode, ids: dict[str, list[int]]):
    """Generated cases; valid ones half the time on the id of a row that exists."""
    generated = operation.as_strategy(mode)
    collection = operation.path.removeprefix("/api/v1/").split("/")[0]
    if mode is GenerationMode.NEGATIVE or "{id}" not in operation.path:
        return generated
    return st.tuples(generated, st.booleans(), st.sampled_from(ids[collection])).map(
        _on_real_row)


def _on_real_row(drawn):
    case, real, pk = drawn
    if real:
        case.path_parameters = {**case.path_parameters, "id": pk}
    return case


def test_api_answers_as_its_schema_says(worlds, wsgi_app):
    schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", wsgi_app)
    token, _ = Token.objects.get_or_create(user=worlds["a"].admin)
    headers = {"Authorization": f"Token {token.key}"}
    # Ids of real rows by the collection a path names: both organisations' (the other's
    # must be a 404 like any id no row has).
    rows = {"datasets": ("dataset",), "dataset-versions": ("version", "version_pending"),
            "runs": ("run_queued", "run_done"),
            "models": ("model_pending", "model_approved", "model_serving"),
            "scoring-jobs": ("job", "job_queued")}
    ids = {collection: [getattr(world, name).pk for world in worlds.values() for name in names]
           for collection, names in rows.items()}
    sent: Counter = Counter()
    statuses: Counter = Counter()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        # Invalid data where there is more to break than the path id (an id that is no
        # number only gets a 404, and costs Hypothesis many rejected draws to make).
        negatable = bool(len(operation.query) or len(operation.body))
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if negatable else [])
        for mode in modes:

            @settings(max_examples=EXAMPLES[mode], deadline=None, derandomize=True, database=None,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(case=cases(operation, mode, ids))
            def run(case):
                sent[case.operation.label] += 1
                response = case.call(headers=headers)
                statuses[response.status_code] += 1
                case.validate_response(response, checks=CHECKS, headers=headers)

            try:
                run()
            except Unsatisfiable:
                # Nothing that can be sent invalid: no negative cases.
                assert mode is GenerationMode.NEGATIVE, operation.label
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - all reported below
                failures.append(f"{operation.label} ({mode}): {exc}")
    print(f"\nschemathesis: {len(operations)} operations, {sum(sent.values())} requests, "
          f"statuses {dict(sorted(statuses.items()))}")
    assert len(operations) >= 20
    assert not failures, "\n\n".join(failures)
