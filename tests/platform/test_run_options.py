"""A run's options: one range table and one validation for the web form, the API and the
``pipeline`` command; work budgets refuse oversized runs before they are queued."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.urls import reverse

from ml_core.spec import TrainConfig
from tests.conftest import finance_frame
from training.budgets import WorkBudgetExceeded, plan_work
from training.models import TrainingRun
from training.options import OPTION_RANGES, InvalidRunOptions, train_config
from training.services import start_run
from verticals.registry import verticals

pytestmark = pytest.mark.django_db

API = "/api/v1"

# Each refused today's code accepted (issue 16): option -> an out-of-range value.
OUT_OF_RANGE = [
    ("epochs", 100000), ("epochs", -1), ("batch_size", 0), ("batch_size", -5),
    ("test_fraction", 1.5), ("val_fraction", 0), ("learning_rate", "nan"),
    ("learning_rate", 0), ("hidden_sizes", [0]), ("hidden_sizes", [8] * 20),
    ("class_weighting", "maybe"), ("epochs", True), ("max_length", 100000),
    ("window", 10**9), ("patience", 0),
]


@pytest.mark.parametrize(("option", "value"), OUT_OF_RANGE)
def test_the_api_answers_400_naming_the_option_and_its_range(api_client, analyst,
                                                            validated_version, option, value):
    response = api_client(analyst).post(f"{API}/runs/", {
        "dataset_version": validated_version.pk, "config": {option: value}}, format="json")
    assert response.status_code == 400, response.json()
    body = response.json()
    assert option in body["detail"] and "allowed:" in body["detail"]
    assert body["errors"][0]["option"] == option
    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize(("privacy", "option"), [
    ({"target_epsilon": 0}, "target_epsilon"), ({"target_epsilon": 1e9}, "target_epsilon"),
    ({"delta": 0.5}, "delta"), ({"max_grad_norm": 0}, "max_grad_norm"),
    ({"max_grad_norm": 1e6}, "max_grad_norm"),
])
def test_privacy_options_have_ranges_too(api_client, analyst, validated_version, privacy, option):
    response = api_client(analyst).post(f"{API}/runs/", {
        "dataset_version": validated_version.pk, "privacy": privacy}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["option"] == option


def test_booleans_are_parsed_strictly_and_stored_parsed(api_client, analyst, validated_version):
    response = api_client(analyst).post(f"{API}/runs/", {
        "dataset_version": validated_version.pk,
        "config": {"class_weighting": "false", "epochs": "2"}}, format="json")
    assert response.status_code == 201, response.json()
    run = TrainingRun.objects.get()
    # Today "false" was stored as a string and read as truthy.
    assert run.config["class_weighting"] is False and run.config["epochs"] == 2
    assert train_config(_spec(), run.config).class_weighting is False


def test_maximal_allowed_options_are_accepted(analyst, validated_version):
    top = {name: option.high for name, option in OPTION_RANGES.items()
           if option.kind in (int, float) and name not in ("test_fraction", "val_fraction")}
    top.update(test_fraction=0.4, val_fraction=0.4, hidden_sizes=[4] * 8,
               batch_size=8192, class_weighting=True)
    run = start_run(version=validated_version, user=analyst, config=top, enqueue=False)
    assert run.config["epochs"] == 500


def test_every_problem_default_is_within_its_ranges():
    for vertical in verticals():
        for problem in vertical.problems:
            defaults = {name: getattr(problem.spec.train, name) for name in OPTION_RANGES}
            defaults["hidden_sizes"] = list(defaults["hidden_sizes"])
            train_config(problem.spec, defaults)  # raises when out of range


def test_the_web_form_refuses_with_the_same_ranges(client, analyst, validated_version):
    client.force_login(analyst)
    response = client.post(reverse("run_start", args=[validated_version.pk]),
                           {"target_epsilon": "3", "seed": "0", "epochs": "100000"},
                           follow=True)
    assert "Training was not started" in response.content.decode()
    assert "500" in response.content.decode()
    assert not TrainingRun.objects.exists()


def test_the_web_form_refuses_a_run_over_the_work_budget(client, analyst, validated_version,
                                                         settings):
    settings.TESSERA_MAX_RUN_STEPS = 50
    client.force_login(analyst)
    response = client.post(reverse("run_start", args=[validated_version.pk]),
                           {"target_epsilon": "3", "seed": "0", "epochs": "400"}, follow=True)
    page = response.content.decode()
    assert "TESSERA_MAX_RUN_STEPS" in page and "optimiser steps" in page
    assert not TrainingRun.objects.exists()


def test_the_api_refuses_a_run_over_a_work_budget_with_the_figure(api_client, analyst,
                                                                  validated_version, settings):
    settings.TESSERA_MAX_RUN_ROW_EPOCHS = 10_000
    response = api_client(analyst).post(f"{API}/runs/", {
        "dataset_version": validated_version.pk, "config": {"epochs": 100}}, format="json")
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "rows x epochs" in detail and "10,000" in detail
    settings.TESSERA_MAX_RUN_ROW_EPOCHS = 10**9
    settings.TESSERA_MAX_RUN_MEMORY_MB = 0.001
    response = api_client(analyst).post(f"{API}/runs/", {
        "dataset_version": validated_version.pk, "config": {"epochs": 2}}, format="json")
    assert response.status_code == 400 and "TESSERA_MAX_RUN_MEMORY_MB" in response.json()["detail"]
    assert not TrainingRun.objects.exists()


def test_the_plan_counts_steps_of_the_model_and_its_twin():
    train = TrainConfig(epochs=10, batch_size=10, test_fraction=0.2, val_fraction=0.2)
    private = plan_work(rows=1000, columns=5, train=train, private=True)
    assert private.steps_per_epoch == 60 and private.total_steps == 2 * 10 * 60
    assert private.row_epochs == 2 * 10 * 600
    assert plan_work(rows=1000, columns=5, train=train, private=False).total_steps == 600


def test_the_refusal_is_a_value_error_for_every_caller(analyst, validated_version, settings):
    with pytest.raises(InvalidRunOptions, match="batch_size"):
        start_run(version=validated_version, user=analyst, config={"batch_size": 0})
    settings.TESSERA_MAX_RUN_STEPS = 1
    with pytest.raises(WorkBudgetExceeded):
        start_run(version=validated_version, user=analyst, config={"epochs": 2})


@pytest.mark.parametrize(("option", "expected"), [
    ("epochs=100000", "epochs"), ("batch_size=0", "batch_size"),
    ("class_weighting=maybe", "class_weighting"), ("learning_rate=nan", "learning_rate"),
    ("hidden_sizes=0", "hidden_sizes"), ("test_fraction=1.5", "test_fraction"),
])
def test_the_command_refuses_out_of_range_options(tmp_path, option, expected):
    path = tmp_path / "applications.csv"
    finance_frame(300, seed=3).to_csv(path, index=False)
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("pipeline", str(path), "--vertical", "finance", "--problem", "credit_risk",
                     "--target", "default", "--inline", "--json", "--set", option, stdout=out)
    assert exit_.value.code == 1
    message = json.loads(out.getvalue())["errors"][0]["message"]
    assert expected in message and "allowed:" in message
    assert not TrainingRun.objects.exists()


def _spec():
    from verticals.registry import get_problem

    return get_problem("finance", "credit_risk").spec


def test_the_clipping_bound_is_an_option_the_run_keeps(analyst, validated_version):
    from training.options import privacy_config

    run = start_run(version=validated_version, user=analyst, max_grad_norm=0.5,
                    config={"epochs": 2}, enqueue=False)
    assert run.privacy_requested["max_grad_norm"] == 0.5
    assert privacy_config(_spec(), run.privacy_requested).max_grad_norm == 0.5
