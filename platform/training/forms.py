"""The "Train a model" form on a dataset version's page."""

from __future__ import annotations

from django import forms


class TrainForm(forms.Form):
    privacy_enabled = forms.BooleanField(
        required=False, initial=True, label="Train with differential privacy",
    )
    target_epsilon = forms.FloatField(
        min_value=0.01, max_value=100, label="Target epsilon",
        help_text="The privacy budget: smaller is more private and usually less accurate.",
    )
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=0, label="Seed")
    epochs = forms.IntegerField(min_value=1, max_value=500, required=False, label="Epochs",
                                help_text="Blank: the problem's default.")
    horizon = forms.IntegerField(min_value=1, max_value=365, required=False,
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
