from __future__ import annotations

from django import forms

from audits.models import Review


class ReviewForm(forms.Form):
    decision = forms.ChoiceField(choices=Review.Decision.choices, widget=forms.RadioSelect)
    comment = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Required: why you approve or reject, for the audit log.",
    )

    def clean_comment(self):
        comment = self.cleaned_data["comment"].strip()
        if not comment:
            raise forms.ValidationError("A comment is required.")
        return comment
