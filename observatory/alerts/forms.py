"""Forms of the /alerts/ pages: rules, channels, silences (the same rules as the API)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django import forms

from observatory.alerts.models import Channel, Rule, Silence, mask_url
from observatory.alerts.validation import STAGES, email_problems, matcher_problems
from observatory.lib import http


class RuleForm(forms.ModelForm[Rule]):
    labels = forms.JSONField(
        required=False, initial=dict, help_text='extra labels, e.g. {"team": "erp"}'
    )

    class Meta:
        model = Rule
        fields = [
            "name",
            "kind",
            "severity",
            "description",
            "active",
            "stage",
            "system",
            "channel",
            "operation",
            "while_system",
            "kpi",
            "field",
            "op",
            "threshold",
            "window_s",
            "min_count",
            "min_failed",
            "for_s",
            "repeat_s",
            "keep_firing_s",
            "labels",
            "channels",
        ]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "channels": forms.CheckboxSelectMultiple,
            "stage": forms.Select(choices=[("", "—")] + [(s, s) for s in STAGES]),
        }
        help_texts = {
            "threshold": "stuck: orders (default 1); error_rate: a share (0.05 = 5 %); "
            "kpi: the value to cross",
            "window_s": "seconds (error_rate, silence, kpi)",
            "channels": "none ticked: every active channel",
        }

    def clean_labels(self) -> dict[str, str]:
        value = self.cleaned_data.get("labels") or {}
        if not isinstance(value, dict):
            raise forms.ValidationError("an object of label -> value")
        return {str(k): str(v) for k, v in value.items()}

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("kind") == "stuck" and data.get("threshold") is None:
            data["threshold"] = 1
        return data


class ChannelForm(forms.ModelForm[Channel]):
    webhook_url = forms.URLField(
        required=False,
        max_length=500,
        assume_scheme="https",
        help_text="Slack incoming webhook (https://hooks.slack.com/services/…)",
    )
    to = forms.CharField(
        required=False,
        label="Email addresses",
        help_text="comma or newline separated",
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    bot_token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Slack bot token (xoxb-…); blank keeps the current one",
    )

    class Meta:
        model = Channel
        fields = ["name", "kind", "webhook_url", "bot_token", "slack_channel", "to", "active"]

    def __init__(self, *args: Any, reveal: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["to"] = ", ".join(self.instance.to or [])
        if not reveal:
            # only the admin group sees where a channel posts: the URL is its secret
            self.initial["webhook_url"] = mask_url(self.instance.webhook_url)
            for field in self.fields.values():
                field.disabled = True

    def clean_to(self) -> list[str]:
        raw = self.cleaned_data.get("to") or ""
        return [a.strip() for a in raw.replace("\n", ",").split(",") if a.strip()]

    def clean_bot_token(self) -> str:
        value = (self.cleaned_data.get("bot_token") or "").strip()
        if not value and self.instance.pk:
            return str(self.instance.bot_token)
        return value

    def clean_webhook_url(self) -> str:
        url = (self.cleaned_data.get("webhook_url") or "").strip()
        if url:
            try:
                http.check_url(url, resolve=False)
            except http.UnsafeURL as exc:
                raise forms.ValidationError(str(exc)) from None
        return url

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("kind") == "email":
            problem = email_problems(data.get("to") or [])
            if problem:
                self.add_error("to", problem)
            data["webhook_url"], data["bot_token"], data["slack_channel"] = "", "", ""
        elif data.get("kind") == "slack":
            data["to"] = []
        return data


def parse_matchers(raw: str) -> dict[str, str]:
    """``system=erp, kind=stuck`` -> a matcher dict."""
    out: dict[str, str] = {}
    for part in raw.replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise forms.ValidationError(f"{part!r}: write label=value")
        key, value = part.split("=", 1)
        out[key.strip()] = value.strip().strip('"')
    return out


class SilenceForm(forms.Form):
    matchers = forms.CharField(
        help_text="label=value pairs, all must match: e.g. system=erp, kind=stuck",
        widget=forms.TextInput(attrs={"placeholder": "system=erp"}),
    )
    starts_at = forms.DateTimeField(
        required=False,
        help_text="UTC; blank: now",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    ends_at = forms.DateTimeField(
        help_text="UTC",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))

    def clean_matchers(self) -> dict[str, str]:
        matchers = parse_matchers(self.cleaned_data.get("matchers") or "")
        problem = matcher_problems(matchers)
        if problem:
            raise forms.ValidationError(problem)
        return matchers

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        now = datetime.now(UTC)
        for name in ("starts_at", "ends_at"):
            value = data.get(name)
            if isinstance(value, datetime) and value.tzinfo is None:
                data[name] = value.replace(tzinfo=UTC)
        starts = data.get("starts_at") or now
        data["starts_at"] = starts
        ends = data.get("ends_at")
        if ends is not None:
            if ends <= starts:
                self.add_error("ends_at", "must be after the start")
            elif ends <= now:
                self.add_error("ends_at", "is in the past")
        return data

    @staticmethod
    def initial_for(labels: dict[str, str] | None = None) -> dict[str, Any]:
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        picked = {k: v for k, v in (labels or {}).items() if k in ("rule", "system", "stage")}
        return {
            "matchers": ", ".join(f"{k}={v}" for k, v in picked.items()),
            "ends_at": now + timedelta(hours=2),
        }


__all__ = ["ChannelForm", "RuleForm", "Silence", "SilenceForm", "parse_matchers"]
