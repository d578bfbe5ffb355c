"""Alerting's scheduled work (thin: the work is in actions).

``evaluate`` runs on the beat every ``ALERTS_EVALUATE_EVERY_S`` and nudges ``deliver``
when it queued notifications; ``deliver`` also runs on its own beat for retries, so a
slow or failing channel never holds evaluation up.
"""

from __future__ import annotations

from celery import shared_task

from observatory.alerts.actions import do_deliver, do_evaluate


@shared_task(name="observatory.alerts.tasks.evaluate", ignore_result=True)
def evaluate() -> None:
    """Evaluate every active rule once; queue delivery of what changed."""
    result = do_evaluate()
    if result.notifications:
        deliver.delay()


@shared_task(name="observatory.alerts.tasks.deliver", ignore_result=True)
def deliver() -> None:
    """One delivery pass over the due notifications (retries included)."""
    do_deliver()
