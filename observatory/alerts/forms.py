"""Forms of the /alerts/ pages: rules, channels, silences (the same rules as the API)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django import forms

from observatory.alerts.models import Channel, Rule, Silence, mask_url
from observatory.alerts.validation import (
    KIND_FIELDS,
    KIND_SPECIFIC,
    KPI_FIELDS,
    STAGES,
    email_problems,
    kpi_field_ok,
    matcher_problems,
)
from observatory.lib import http

#: KPI fields in words (docs/kpis.md)
FIELD_WORDS = {
    "count": "how many were measured",
    "p50_s": "median time (seconds)",
    "p95_s": "95th percentile time (seconds)",
    "p99_s": "99th percentile time (seconds)",
    "max_s": "longest time (seconds)",
    "within_sla": "share within the SLA (0 to 1)",
    "orders": "orders",
    "with_exception": "orders with an exception",
    "rate": "rate (0 to 1: 0.05 is 5 %)",
    "deliveries": "deliveries",
    "duplicates": "duplicate deliveries",
    "posted_twice": "orders posted twice",
    "worst_source_rate": "rate of the worst source (0 to 1)",
    "total": "total",
    "open": "open exceptions",
    "under_1h": "open for under 1 h",
    "h1_to_4": "open for 1 to 4 h",
    "h4_to_24": "open for 4 to 24 h",
    "over_24h": "open for over 24 h",
    "oldest_s": "age of the oldest (seconds)",
    "retries": "retries",
    "replays": "replays",
    "alerts_mean_s": "mean time to resolve an alert (seconds)",
    "refunds": "refunds",
    "settled_within_sla": "refunds settled within the SLA",
    "requested": "cancellations requested",
    "succeeded": "cancellations that succeeded",
    "exceptions_mean_s": "mean time to resolve an exception (seconds)",
}
OP_WORDS = [
    (">", "is above"),
    (">=", "is at or above"),
    ("<", "is below"),
    ("<=", "is at or below"),
]
#: per kind, what the threshold means
THRESHOLD_HELP = {
    "kpi": "the value the KPI's field is compared with",
    "stuck": "how many orders must be stuck before it fires (default 1)",
    "error_rate": "a share of failed hops, from 0 to 1 (0.05 is 5 %)",
}
LABELS = {
    "name": "Name",
    "kind": "What to watch",
    "severity": "Severity",
    "description": "Description (for the people who get it)",
    "active": "Active",
    "stage": "Stage the orders are late to reach",
    "system": "System",
    "channel": "Sales channel (optional)",
    "operation": "Only this operation (optional)",
    "while_system": "Only while this system keeps sending (optional)",
    "kpi": "KPI",
    "field": "Figure of the KPI",
    "op": "Fires when the figure",
    "threshold": "Threshold",
    "window_s": "Over the last (seconds)",
    "min_count": "At least this many hops in the window",
    "min_failed": "At least this many failed hops in the window",
    "for_s": "True for this long before it fires (seconds)",
    "repeat_s": "Remind every (seconds, until acknowledged)",
    "keep_firing_s": "Keep firing this long after it clears (seconds)",
    "labels": "Labels",
    "channels": "Send to",
}


def _figures(kpi: str, form: forms.BaseForm) -> list[str]:
    """The figures a rule may watch of ``kpi``: its fields, and for a per-currency one
    (``by_currency.USD``) the currency the rule or the form already names."""
    out = list(KPI_FIELDS[kpi])
    instance = getattr(form, "instance", None)
    named = {getattr(instance, "field", "") or "", str(form.data.get("field") or "")}
    if getattr(instance, "kpi", "") == kpi or form.data.get("kpi") == kpi:
        out += sorted(f for f in named if f and f not in out and kpi_field_ok(kpi, f))
    return out


def _mutable(data: Any) -> Any:
    """A bound form's data as a copy that may be changed (a QueryDict or a dict)."""
    return data.copy()


def words(value: str) -> str:
    """``acceptance_to_posting`` -> ``Acceptance to posting``."""
    return value.replace("_", " ").capitalize()


def parse_labels(raw: Any) -> dict[str, str]:
    """Labels as ``team=erp, area=web`` (or a JSON object) -> a dict; every problem
    raises one ValidationError naming it."""
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    text = str(raw or "").strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            raise forms.ValidationError("not valid JSON: write team=erp, area=web") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("write label=value pairs: team=erp, area=web")
        return {str(k): str(v) for k, v in value.items()}
    return parse_matchers(text)


class LabelsField(forms.CharField):
    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
        return value

    def to_python(self, value: Any) -> dict[str, str]:  # type: ignore[override]
        return parse_labels(value)


class OneErrorPerProblem(forms.BaseForm):
    """One error per problem: a field the form already refused ("Enter a valid URL") is
    not also told "required" by the model's own check."""

    def add_error(self, field: str | None, error: Any) -> None:
        if field is None and isinstance(error, forms.ValidationError):
            if hasattr(error, "error_dict"):
                kept = {k: v for k, v in error.error_dict.items() if k not in self.errors}
                if not kept:
                    return
                error = forms.ValidationError(kept)
        elif field is not None and field in self.errors:
            return
        super().add_error(field, error)


class RuleForm(OneErrorPerProblem, forms.ModelForm[Rule]):
    """A rule, with only the fields its kind uses shown (``static/js/alerts.js``; without
    script every field shows and the unused ones are cleared on save), choices for the KPI,
    its figure, the system and the stage, and one error per problem."""

    labels = LabelsField(
        required=False,
        help_text="extra labels on every alert of the rule, as label=value pairs: team=erp",
    )

    class Meta:
        model = Rule
        fields = [
            "name",
            "kind",
            "severity",
            "description",
            "active",
            "kpi",
            "field",
            "op",
            "stage",
            "system",
            "channel",
            "operation",
            "while_system",
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
        }
        help_texts = {
            "threshold": "stuck: orders (default 1); error rate: a share (0.05 = 5 %); "
            "KPI: the value to cross",
            "window_s": "seconds: 300 is 5 minutes, 3600 an hour",
            "channels": "none ticked: every active channel",
        }

    def __init__(self, *args: Any, systems: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.is_bound:
            # the fields of other kinds (left over from switching kinds) are not kept
            used = KIND_FIELDS.get(str(self.data.get("kind")))
            if used is not None:
                data = _mutable(self.data)
                for name in KIND_SPECIFIC:
                    if name not in used:
                        data[name] = "1" if name in ("min_count", "min_failed") else ""
                self.data = data
        for name, label in LABELS.items():
            if name in self.fields:
                self.fields[name].label = label
        self.fields["kpi"] = forms.ChoiceField(
            required=False,
            label=LABELS["kpi"],
            choices=[("", "—")] + [(k, words(k)) for k in KPI_FIELDS],
        )
        self.fields["field"] = forms.ChoiceField(
            required=False,
            label=LABELS["field"],
            choices=[("", "—")]
            + [
                (words(kpi), [(f, FIELD_WORDS.get(f, words(f))) for f in _figures(kpi, self)])
                for kpi in KPI_FIELDS
            ],
            help_text="the figures of the KPI chosen above",
        )
        self.fields["field"].widget.attrs["data-kpi-fields"] = json.dumps(
            {k: list(v) for k, v in KPI_FIELDS.items()}
        )
        self.fields["op"] = forms.ChoiceField(
            required=False, label=LABELS["op"], choices=[("", "—"), *OP_WORDS]
        )
        self.fields["stage"] = forms.ChoiceField(
            required=False,
            label=LABELS["stage"],
            choices=[("", "—")] + [(s, words(s)) for s in STAGES],
        )
        known = sorted(
            {*systems, *(v for v in (self.instance.system, self.instance.while_system) if v)}
        )
        for name in ("system", "while_system"):
            self.fields[name] = forms.ChoiceField(
                required=False,
                label=LABELS[name],
                choices=[("", "—")] + [(s, s) for s in known],
            )
        self.fields["threshold"].widget.attrs["data-help"] = json.dumps(THRESHOLD_HELP)

    def clean_field(self) -> str:
        return str(self.cleaned_data.get("field") or "")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("kind") == "stuck" and data.get("threshold") is None:
            data["threshold"] = 1
        return data

    def problems(self) -> list[tuple[str, str]]:
        """(the field's label, its one error), in the form's order."""
        out = []
        for name, errors in self.errors.items():
            label = str(self.fields[name].label) if name in self.fields else ""
            out.append((label, str(errors[0])))
        return out

    def kind_fields(self) -> str:
        """JSON for the form's ``data-kind-fields``: kind -> the fields it uses."""
        return json.dumps({k: list(v) for k, v in KIND_FIELDS.items()})


#: per channel kind, the fields it uses (``static/js/alerts.js`` shows only those)
CHANNEL_FIELDS = {
    "slack": ("webhook_url", "bot_token", "slack_channel"),
    "email": ("to",),
    "teams": ("webhook_url",),
    "pagerduty": ("routing_key",),
    "webhook": ("webhook_url", "secret"),
}


#: per channel kind, what its URL is
URL_HELP = {
    "slack": "a Slack incoming webhook (https://hooks.slack.com/services/…); or leave it "
    "blank and give a bot token and a channel",
    "teams": "the URL of a Teams Workflows flow “When a Teams webhook request is received” "
    "that posts the card to a channel",
    "webhook": "where Alertmanager's webhook JSON (version 4) is posted",
}


class ChannelForm(OneErrorPerProblem, forms.ModelForm[Channel]):
    webhook_url = forms.URLField(
        required=False,
        max_length=2000,
        assume_scheme="https",
        label="Webhook URL",
        help_text="Slack: an incoming webhook (https://hooks.slack.com/services/…); Teams: "
        "the URL of a Workflows “when a webhook request is received” flow; webhook: where "
        "the Alertmanager JSON is posted",
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
    routing_key = forms.CharField(
        required=False,
        label="PagerDuty routing key",
        widget=forms.PasswordInput(render_value=False),
        help_text="the integration key of an Events API v2 integration; blank keeps the "
        "current one",
    )
    secret = forms.CharField(
        required=False,
        label="Signing secret",
        widget=forms.PasswordInput(render_value=False),
        help_text="webhook: each body is signed with HMAC-SHA256 in X-Observatory-Signature; "
        "blank keeps the current one (none: unsigned)",
    )

    class Meta:
        model = Channel
        fields = [
            "name",
            "kind",
            "webhook_url",
            "bot_token",
            "slack_channel",
            "to",
            "routing_key",
            "secret",
            "active",
        ]

    def __init__(self, *args: Any, reveal: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.is_bound:
            # the fields of other kinds are not kept (nor judged)
            used = CHANNEL_FIELDS.get(str(self.data.get("kind")))
            if used is not None:
                data = _mutable(self.data)
                for name in ("webhook_url", "bot_token", "slack_channel", "to", "routing_key",
                             "secret"):  # fmt: skip
                    if name not in used:
                        data[name] = ""
                self.data = data
        self.fields["webhook_url"].widget.attrs["data-help"] = json.dumps(URL_HELP)
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

    def _kept(self, name: str) -> str:
        """A secret left blank keeps the current one (never shown again)."""
        value = (self.cleaned_data.get(name) or "").strip()
        if name not in CHANNEL_FIELDS.get(str(self.data.get("kind")), ()):
            return ""
        if not value and self.instance.pk:
            return str(getattr(self.instance, name))
        return value

    def clean_bot_token(self) -> str:
        return self._kept("bot_token")

    def clean_routing_key(self) -> str:
        return self._kept("routing_key")

    def clean_secret(self) -> str:
        return self._kept("secret")

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
        kind = data.get("kind")
        if kind == "email":
            problem = email_problems(data.get("to") or [])
            if problem:
                self.add_error("to", problem)
        return data

    def kind_fields(self) -> str:
        return json.dumps(CHANNEL_FIELDS)


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
