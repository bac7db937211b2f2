"""The "Train a model" form on a dataset version's page.

Its bounds come from the one table of option ranges (training.options), and the service it
calls checks them again with the API's and the command's validation.
"""

from __future__ import annotations

from django import forms

from training.options import OPTION_RANGES, PRIVACY_RANGES


def _bounds(option) -> dict:
    return {"min_value": option.low, "max_value": option.high}


class TrainForm(forms.Form):
    privacy_enabled = forms.BooleanField(
        required=False, initial=True, label="Train with differential privacy",
    )
    target_epsilon = forms.FloatField(
        **_bounds(PRIVACY_RANGES["target_epsilon"]), label="Target epsilon",
        help_text="The privacy budget: smaller is more private and usually less accurate.",
    )
    seed = forms.IntegerField(**_bounds(OPTION_RANGES["seed"]), initial=0, label="Seed")
    epochs = forms.IntegerField(**_bounds(OPTION_RANGES["epochs"]), required=False,
                                label="Epochs", help_text="Blank: the problem's default.")
    horizon = forms.IntegerField(**_bounds(OPTION_RANGES["horizon"]), required=False,
                                 label="Forecast horizon (periods ahead)",
                                 help_text="Forecasting problems only. "
                                           "Blank: the problem's default.")

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        config = {"seed": data["seed"]}
        if data.get("epochs"):
            config["epochs"] = data["epochs"]
        if data.get("horizon"):
            config["horizon"] = data["horizon"]
        return {"privacy_enabled": bool(data.get("privacy_enabled")),
                "target_epsilon": data["target_epsilon"], "config": config}
