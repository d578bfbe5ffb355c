"""Alerting (docs/alerts.md; docs/architecture.md, "Alerts"): rules as data, alerts with their state, the
outbox of notifications, every delivery attempt, channels and silences.

* ``Rule``: one of four kinds (``kpi``, ``stuck``, ``error_rate``, ``silence``) with its
  own fields, a severity, labels, ``for_s`` and ``repeat_s``.
* ``Alert``: one instance of a rule for one set of labels (its fingerprint), moving
  pending -> firing -> resolved. At most one unresolved alert per fingerprint; a later
  occurrence is a new row, so the history stays.
* ``AlertEvent``: a state change worth telling someone (firing, repeat, update, resolved,
  acknowledged; or a channel's test message), with a snapshot of what was true then.
* ``Notification``: the outbox: one row per event and channel, claimed by the delivery
  pass with a conditional UPDATE, retried with backoff; ``DeliveryAttempt`` logs each try.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

# --- vocabularies -------------------------------------------------------------------------

KPI = "kpi"
STUCK = "stuck"
ERROR_RATE = "error_rate"
SILENCE = "silence"
RULE_KINDS = [
    (KPI, "KPI crosses a threshold"),
    (STUCK, "transactions stuck past an SLA"),
    (ERROR_RATE, "a system's error rate"),
    (SILENCE, "a system goes silent"),
]
#: kinds whose alerts speak for a whole system and hold back its stuck alerts
SYSTEM_KINDS = (ERROR_RATE, SILENCE)

CRITICAL = "critical"
WARNING = "warning"
INFO = "info"
SEVERITIES = [(CRITICAL, "critical"), (WARNING, "warning"), (INFO, "info")]

OPS = [(">", ">"), (">=", ">="), ("<", "<"), ("<=", "<=")]

PENDING = "pending"
FIRING = "firing"
RESOLVED = "resolved"
ALERT_STATES = [(PENDING, "pending"), (FIRING, "firing"), (RESOLVED, "resolved")]
UNRESOLVED = (PENDING, FIRING)

# events
EV_FIRING = "firing"
EV_REPEAT = "repeat"
EV_UPDATE = "update"
EV_RESOLVED = "resolved"
EV_ACKNOWLEDGED = "acknowledged"
EV_TEST = "test"
EVENT_KINDS = [
    (EV_FIRING, "firing"),
    (EV_REPEAT, "reminder"),
    (EV_UPDATE, "update"),
    (EV_RESOLVED, "resolved"),
    (EV_ACKNOWLEDGED, "acknowledged"),
    (EV_TEST, "test message"),
]

# notification states
N_PENDING = "pending"
N_SENT = "sent"
N_FAILED = "failed"
N_SKIPPED = "skipped"
NOTIFICATION_STATES = [
    (N_PENDING, "pending"),
    (N_SENT, "sent"),
    (N_FAILED, "failed"),
    (N_SKIPPED, "skipped"),
]

SLACK = "slack"
EMAIL = "email"
TEAMS = "teams"
PAGERDUTY = "pagerduty"
WEBHOOK = "webhook"
CHANNEL_KINDS = [
    (SLACK, "Slack"),
    (EMAIL, "email"),
    (TEAMS, "Microsoft Teams"),
    (PAGERDUTY, "PagerDuty"),
    (WEBHOOK, "webhook (Alertmanager JSON)"),
]
#: kinds that post to a URL the channel holds (``webhook_url``), checked for private addresses
URL_KINDS = (SLACK, TEAMS, WEBHOOK)


def mask_url(url: str) -> str:
    """A webhook URL with everything after its host hidden: the path of a Slack incoming
    webhook is its secret (``https://hooks.slack.com/…``)."""
    if not url:
        return ""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return "…"
    return f"{parts.scheme}://{parts.hostname}/…"


def mask_secret(value: str) -> str:
    """A token with only its kind shown (``xoxb-…``)."""
    if not value:
        return ""
    kind = value.split("-", 1)[0] if "-" in value[:6] else ""
    return f"{kind}-…" if kind else "…"


def mask_key(value: str) -> str:
    """A routing key with only its last four characters shown (``…3f9a``)."""
    return f"…{value[-4:]}" if len(value) > 8 else ("…" if value else "")


class Channel(models.Model):
    """Where notifications go (docs/alerts.md, "Channels"): a Slack incoming webhook, a Slack
    bot token and channel (messages are then updated in place on acknowledgement and
    resolution), email, a Microsoft Teams Workflows webhook, a PagerDuty Events API v2
    routing key, or a generic webhook (Alertmanager's JSON, signed with ``secret``)."""

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=CHANNEL_KINDS)
    #: Slack incoming webhook, Teams Workflows webhook, or the generic webhook's ``url``
    webhook_url = models.URLField(max_length=2000, blank=True, help_text="webhook URL")
    bot_token = models.CharField(
        max_length=255, blank=True, help_text="Slack bot token (xoxb-...), with a channel"
    )
    slack_channel = models.CharField(
        max_length=100, blank=True, help_text="Slack channel id or #name (bot token mode)"
    )
    to = models.JSONField(default=list, blank=True, help_text="email addresses")
    routing_key = models.CharField(
        max_length=64, blank=True, help_text="PagerDuty Events API v2 integration (routing) key"
    )
    secret = models.CharField(
        max_length=255, blank=True, help_text="webhook: HMAC-SHA256 key signing each body"
    )
    active = models.BooleanField(default=True)
    #: set when a delivery failed for good (404, invalid_token, channel_not_found)
    failing = models.BooleanField(default=False)
    failing_reason = models.CharField(max_length=255, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.mode})"

    @property
    def mode(self) -> str:
        """``slack-webhook``, ``slack-bot``, ``email``, ``teams``, ``pagerduty`` or ``webhook``."""
        if self.kind == SLACK:
            return "slack-bot" if self.bot_token else "slack-webhook"
        return self.kind

    @property
    def target(self) -> str:
        """Where it posts, for display to anyone (secrets elided)."""
        if self.kind == EMAIL:
            return ", ".join(self.to)
        if self.kind == PAGERDUTY:
            return f"PagerDuty key {mask_key(self.routing_key)}"
        if self.kind == WEBHOOK:
            signed = " (signed)" if self.secret else ""
            return mask_url(self.webhook_url) + signed
        if self.bot_token:
            return f"bot {mask_secret(self.bot_token)} → {self.slack_channel}"
        return mask_url(self.webhook_url)

    def clean(self) -> None:
        if self.kind == SLACK:
            if bool(self.webhook_url) == bool(self.bot_token):
                raise ValidationError("a Slack channel needs a webhook URL or a bot token")
            if self.bot_token and not self.slack_channel:
                raise ValidationError({"slack_channel": "bot token mode needs a channel"})
        elif self.kind == EMAIL:
            from observatory.alerts.validation import email_problems

            problem = email_problems(self.to)
            if problem:
                raise ValidationError({"to": problem})
        else:
            from observatory.alerts.validation import channel_problems

            problems = channel_problems(self.kind, self)
            if problems:
                raise ValidationError(problems)


class Rule(models.Model):
    """An alerting rule, as data (docs/alerts.md). Which fields apply depends on ``kind``:

    * ``kpi``: ``kpi``, ``field``, ``op``, ``threshold``, ``window_s`` (+ optional
      ``channel``, ``system`` passed to the KPI);
    * ``stuck``: ``stage``, ``threshold`` (default 1), optional ``channel``, ``system``;
    * ``error_rate``: ``system``, ``threshold`` (0..1), ``window_s``, optional
      ``operation``, ``min_count`` (hops needed in the window before a rate counts) and
      ``min_failed`` (failed hops needed: a stray timeout in a quiet spell is no outage);
    * ``silence``: ``system``, ``window_s``, optional ``while_system``.

    A rule without channels notifies every active channel.
    """

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=150, unique=True)
    kind = models.CharField(max_length=16, choices=RULE_KINDS)
    severity = models.CharField(max_length=16, choices=SEVERITIES, default=WARNING)
    description = models.TextField(blank=True)
    for_s = models.PositiveIntegerField(default=0, help_text="pending this long before firing")
    repeat_s = models.PositiveIntegerField(
        default=14400, help_text="remind after this long unless acknowledged"
    )
    keep_firing_s = models.PositiveIntegerField(
        default=0, help_text="stay firing this long after the condition clears (flapping)"
    )
    labels = models.JSONField(default=dict, blank=True)
    channels = models.ManyToManyField(Channel, blank=True, related_name="rules")
    active = models.BooleanField(default=True)

    kpi = models.CharField(max_length=64, blank=True)
    field = models.CharField(max_length=64, blank=True)
    op = models.CharField(max_length=2, choices=OPS, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    window_s = models.PositiveIntegerField(null=True, blank=True)
    stage = models.CharField(max_length=32, blank=True)
    channel = models.CharField(max_length=32, blank=True, help_text="sales channel (web, pos…)")
    system = models.CharField(max_length=64, blank=True)
    operation = models.CharField(max_length=255, blank=True)
    while_system = models.CharField(max_length=64, blank=True)
    min_count = models.PositiveIntegerField(default=1)
    min_failed = models.PositiveIntegerField(
        default=1, help_text="error_rate: failed hops needed in the window"
    )

    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from observatory.alerts.validation import rule_problems

        problems = rule_problems(self)
        if problems:
            raise ValidationError(problems)


class Silence(models.Model):
    """A maintenance window: alerts whose labels match every matcher send nothing between
    ``starts_at`` and ``ends_at``. Ending one early sets ``ends_at``."""

    id = models.BigAutoField(primary_key=True)
    matchers = models.JSONField(help_text="label -> value; all must match")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    comment = models.TextField()
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-starts_at", "-id"]
        indexes = [models.Index(fields=["ends_at"], name="silence_ends")]

    def __str__(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in sorted((self.matchers or {}).items()))
        return f"silence {shown} until {self.ends_at:%Y-%m-%d %H:%M}"

    def clean(self) -> None:
        from observatory.alerts.validation import matcher_problems

        problem = matcher_problems(self.matchers)
        if problem:
            raise ValidationError({"matchers": problem})
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": "must be after the start"})

    def state(self, at: datetime) -> str:
        """``pending`` (starts later), ``active`` or ``expired`` at ``at``."""
        if self.starts_at > at:
            return "pending"
        return "active" if self.ends_at > at else "expired"


class Alert(models.Model):
    id = models.BigAutoField(primary_key=True)
    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="alerts")
    #: identity: the rule and the labels that tell its instances apart (dedupe key)
    fingerprint = models.CharField(max_length=64)
    labels = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=ALERT_STATES, default=PENDING)
    #: when the condition was first seen true (pending since)
    started_at = models.DateTimeField()
    fired_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    #: the last evaluation that found the condition true
    last_true_at = models.DateTimeField()
    last_eval_at = models.DateTimeField()
    value = models.FloatField(null=True, blank=True)
    summary = models.TextField(blank=True)
    #: what the rule found: affected orders (count, value, top by value), figures
    detail = models.JSONField(default=dict, blank=True)
    #: the first and the latest notification queued about it (firing or repeat)
    notified_at = models.DateTimeField(null=True, blank=True)
    last_notified_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, blank=True)
    #: the system-level alert holding this one back (a stuck alert while its system fails)
    inhibited_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="holding"
    )
    #: fingerprints of the alerts this one has held back and summarised
    held = models.JSONField(default=list, blank=True)
    silenced_by = models.ForeignKey(
        Silence, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    #: an incident that began and ended before its data arrived (a backfill, an upload):
    #: recorded, never sent
    found_in_history = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["fingerprint"], condition=~Q(state=RESOLVED), name="alert_unresolved_once"
            ),
        ]
        indexes = [
            models.Index(fields=["state", "-started_at"], name="alert_state_started"),
            models.Index(fields=["rule", "-started_at"], name="alert_rule_started"),
            models.Index(fields=["fingerprint"], name="alert_fingerprint"),
        ]

    def __str__(self) -> str:
        return f"{self.rule.name if self.rule_id else 'alert'} #{self.pk} ({self.state})"

    @property
    def since(self) -> datetime | None:
        """Firing since (pending since, while pending; resolved at, once resolved)."""
        if self.state == RESOLVED:
            return self.resolved_at
        return self.fired_at or self.started_at

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_at is not None


class AlertEvent(models.Model):
    """A state change worth telling someone, with what was true then (the outbox's
    source: its notifications are created in the same transaction)."""

    id = models.BigAutoField(primary_key=True)
    alert = models.ForeignKey(
        Alert, null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    kind = models.CharField(max_length=16, choices=EVENT_KINDS)
    at = models.DateTimeField()
    snapshot = models.JSONField(default=dict)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["alert", "at"], name="alertevent_alert_at")]

    def __str__(self) -> str:
        return f"{self.kind} of alert {self.alert_id} at {self.at:%Y-%m-%d %H:%M:%S}"


class Notification(models.Model):
    """The outbox: one event to one channel. Pending rows are claimed by the delivery
    pass with a conditional UPDATE (a lease in ``claimed_until``), tried, and either
    sent, retried later with backoff (``next_attempt_at``) or failed for good."""

    id = models.BigAutoField(primary_key=True)
    event = models.ForeignKey(AlertEvent, on_delete=models.CASCADE, related_name="notifications")
    alert = models.ForeignKey(
        Alert, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="notifications")
    status = models.CharField(max_length=16, choices=NOTIFICATION_STATES, default=N_PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    claimed_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    #: what the transport returned to find the message again (Slack ``channel`` and ``ts``)
    ref = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["next_attempt_at", "id"],
                name="notification_due",
                condition=Q(status=N_PENDING),
            ),
            models.Index(fields=["alert", "channel"], name="notification_alert_channel"),
        ]

    def __str__(self) -> str:
        return f"{self.event.kind if self.event_id else '?'} to {self.channel_id}: {self.status}"


class DeliveryAttempt(models.Model):
    """One try at delivering a notification, whatever came of it."""

    id = models.BigAutoField(primary_key=True)
    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, related_name="attempt_log"
    )
    at = models.DateTimeField()
    duration_ms = models.FloatField(default=0)
    ok = models.BooleanField(default=False)
    status_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    retry_after_s = models.FloatField(null=True, blank=True)
    permanent = models.BooleanField(default=False)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["notification", "at"], name="attempt_notification")]

    def __str__(self) -> str:
        return f"attempt at {self.at:%H:%M:%S}: {'ok' if self.ok else self.error[:40]}"


class HistoryMark(models.Model):
    """Up to when (wall clock) a rule's problems found after the fact were looked at, to
    be recorded as alerts found in history (``history.py``)."""

    rule = models.OneToOneField(
        Rule, on_delete=models.CASCADE, primary_key=True, related_name="history_mark"
    )
    scanned_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.rule_id} history scanned to {self.scanned_at:%Y-%m-%d %H:%M:%S}"
