from django import forms

from governance.models import GatePolicy


class PromoteForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}),
                             help_text="Why this model should serve as the champion.")
    override_reason = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), label="Override reason",
        help_text="Admins only: promote although gates fail. Logged with the failing gates.")


class RetireForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))


class DatasetPolicyForm(forms.Form):
    budget_epsilon = forms.FloatField(min_value=0.01, label="Privacy budget (total ε)")
    personal_data = forms.BooleanField(required=False, label="Holds personal data")
    nonprivate_allowed = forms.BooleanField(
        required=False, label="Analysts may train without privacy on this dataset")


class GatePolicyForm(forms.ModelForm):
    class Meta:
        model = GatePolicy
        fields = ["require_fairness", "require_privacy", "max_epsilon", "require_baseline",
                  "champion_tolerance", "require_signoff"]
        labels = {"max_epsilon": "Maximum ε", "champion_tolerance":
                  "Tolerance against the champion (primary metric)"}


class ScoringUploadForm(forms.Form):
    file = forms.FileField(help_text="A CSV with the model's input columns.")

    def __init__(self, *args, images: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if images:  # a model whose family scores images (governance.scoring.takes_images)
            self.fields["file"].help_text = ("A ZIP of images (JPEG, PNG, BMP, TIFF, WebP); "
                                             "each is scored under its path in the ZIP.")


class ScheduleForm(forms.Form):
    cron = forms.CharField(required=False, help_text="Five fields: minute hour day month "
                           "weekday, e.g. 0 3 * * 1. Leave empty to use an interval.")
    interval_hours = forms.IntegerField(required=False, min_value=1)
    enabled = forms.BooleanField(required=False, initial=True)
    retrain_on_drift = forms.BooleanField(required=False)

    def clean_cron(self) -> str:
        from governance.schedule_words import validate_cron

        cron = self.cleaned_data.get("cron") or ""
        if not cron.strip():
            return ""
        try:
            return validate_cron(cron)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
