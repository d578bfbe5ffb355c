"""Writes for alerting: evaluation, delivery, and people's verbs.

* ``do_evaluate`` judges every active rule (``queries.findings``), runs the pure state
  machine (``evaluate.step``), writes the alerts, and writes each state change as an
  ``AlertEvent`` with one outbox ``Notification`` per channel, all in one transaction. It
  never sends anything: delivery is separate and can be slow or down without holding
  evaluation up.
* ``do_deliver`` is one delivery pass: it claims due notifications with a conditional
  UPDATE (``FOR UPDATE SKIP LOCKED`` first on PostgreSQL), sends each through its
  channel's transport, logs every attempt, retries with exponential backoff (or the
  ``Retry-After`` Slack asked for), and marks a channel failing on a permanent error.
* ``do_acknowledge`` stops an alert's reminders; ``do_create_*`` and ``do_expire_silence``
  edit configuration; ``do_send_test`` sends a channel's test message now.

The parts: ``evaluation`` (``do_evaluate``, and the outbox it queues), ``delivery``
(``do_deliver``: claims, attempts, retries), ``verbs`` (people's verbs) and ``links``
(signed acknowledge links, the URLs a message carries, webhook URL checks).
"""

from observatory.alerts.actions.delivery import (
    INTERRUPTED,
    LEASE_S,
    DeliverResult,
    _claim,
    backoff_s,
    do_deliver,
    lease_s,
    send_bound_s,
    summarize,
)
from observatory.alerts.actions.evaluation import (
    LIVE_TOPIC,
    EvaluateResult,
    catch_up,
    channel_config,
    do_evaluate,
    hand_down,
    rule_spec,
    snapshot,
)
from observatory.alerts.actions.links import (
    ACK_LINK_MAX_AGE_S,
    ACK_SALT,
    ack_token,
    ack_token_alert,
    ack_url,
    alert_url,
    base_url,
    url_problem,
)
from observatory.alerts.actions.verbs import (
    AlertNotFound,
    InvalidTransition,
    do_acknowledge,
    do_create_channel,
    do_create_rule,
    do_create_silence,
    do_expire_silence,
    do_send_test,
)
from observatory.alerts.models import Notification

__all__ = [
    "ACK_LINK_MAX_AGE_S",
    "ACK_SALT",
    "INTERRUPTED",
    "LEASE_S",
    "LIVE_TOPIC",
    "AlertNotFound",
    "DeliverResult",
    "EvaluateResult",
    "InvalidTransition",
    "Notification",
    "_claim",
    "ack_token",
    "ack_token_alert",
    "ack_url",
    "alert_url",
    "backoff_s",
    "base_url",
    "catch_up",
    "channel_config",
    "do_acknowledge",
    "do_create_channel",
    "do_create_rule",
    "do_create_silence",
    "do_deliver",
    "do_evaluate",
    "do_expire_silence",
    "do_send_test",
    "hand_down",
    "lease_s",
    "rule_spec",
    "send_bound_s",
    "snapshot",
    "summarize",
    "url_problem",
]
