"""The ERP connector: how a posting reaches the NetSuite-style ERP, retries included.

Web and marketplace orders (:mod:`.orders`) and the POS batches (:mod:`.pos`) reach the
ERP the same way: the connector's ``POST`` to NetSuite's REST API, one client span per
attempt. An attempt fails when the ERP is down (the ``erp-outage`` window: a 503, then
backoff from :data:`~.entities.ERP_BACKOFF_BASE_S` doubling up to
:data:`~.entities.ERP_BACKOFF_CAP_S`, jittered) or, for a share
:data:`~.entities.TRANSIENT_ERP_FAILURE` of postings, times out once (30 s, then a retry
10-25 s later). Each failed attempt publishes a retry message that the next attempt
consumes: a new trace, linked to the failed one. The successful attempt carries the
``ok_keys`` (the sales order) and, after an outage, the ``posted_after_outage`` fault.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from observatory.simulator import catalog as cat
from observatory.simulator.engine import Engine
from observatory.simulator.entities import (
    ERP_BACKOFF_BASE_S,
    ERP_BACKOFF_CAP_S,
    TRANSIENT_ERP_FAILURE,
    Step,
)
from observatory.simulator.timing import lognormal


class ErpConnector(Engine):
    """The ERP posting with its failures and retries; see the module docstring."""

    #: the business-time window the ERP answers 503, if the scenario has one (set by the
    #: simulation once it knows where its faults start)
    erp_outage: tuple[datetime, datetime] | None

    def _erp_down(self, moment: datetime) -> bool:
        """Whether the ERP answers 503 at ``moment`` (the outage window)."""
        return self.erp_outage is not None and self.erp_outage[0] <= moment < self.erp_outage[1]

    def _erp_post(
        self,
        rng: random.Random,
        ref: str,
        at: datetime,
        *,
        operation: str,
        keys: dict[str, str | list[str]],
        ok_keys: dict[str, str | list[str]],
        parent: str | None,
        message: str,
        stage: str | None = None,
        platform_status: str | None = None,
        **kw: Any,
    ) -> tuple[list[Step], datetime]:
        """The connector's posting to the ERP, with its failed attempts and retries.

        Attempt 0 continues the ``parent`` trace; each failed attempt publishes a retry
        message that the next attempt consumes (a new trace, linked). Returns the steps
        and the time the posting succeeded.
        """
        steps: list[Step] = []
        attempt = 0
        consumed: str | None = None
        transient = rng.random() < TRANSIENT_ERP_FAILURE
        latency = self.scenario.erp_latency
        http = {
            "http.request.method": "POST",
            "server.address": "4711230.suitetalk.api.netsuite.com",
            "url.path": "/services/rest/record/v1/salesOrder",
        }
        while True:
            down = self._erp_down(at)
            if down or (transient and attempt == 0):
                retry_message = f"{message}:retry:{attempt + 1}"
                if down:
                    error = "NetSuite answered 503 Service Unavailable"
                    duration = lognormal(rng, 0.35, 0.4, 0.05, 3).total_seconds()
                    failure = {"http.response.status_code": 503, "error.type": "503"}
                    backoff = min(ERP_BACKOFF_CAP_S, ERP_BACKOFF_BASE_S * 2**attempt)
                    wait = timedelta(seconds=backoff * rng.uniform(0.8, 1.2))
                else:
                    error = "NetSuite request timed out after 30 s"
                    duration = 30.0
                    failure = {"error.type": "timeout"}
                    wait = timedelta(seconds=rng.uniform(10, 25))
                steps.append(
                    self._span(
                        ref,
                        at,
                        "erp",
                        operation,
                        keys=dict(keys),
                        service=cat.SERVICE_ERP_CONNECTOR,
                        span_kind="client",
                        parent=parent if attempt == 0 else None,
                        consume=consumed,
                        publish=retry_message,
                        outcome="error",
                        error=error,
                        duration_s=duration,
                        retry_attempt=attempt,
                        attributes={**http, **failure},
                        fault="erp_503" if down else None,
                        **kw,
                    )
                )
                at = at + timedelta(seconds=duration) + wait
                consumed = retry_message
                attempt += 1
                continue
            duration = lognormal(rng, 1.2 * latency, 0.5, 0.2, 12 * latency).total_seconds()
            steps.append(
                self._span(
                    ref,
                    at,
                    "erp",
                    operation,
                    keys={**keys, **ok_keys},
                    service=cat.SERVICE_ERP_CONNECTOR,
                    span_kind="client",
                    parent=parent if attempt == 0 else None,
                    consume=consumed,
                    stage=stage,
                    platform_status=platform_status,
                    duration_s=duration,
                    retry_attempt=attempt,
                    attributes={**http, "http.response.status_code": 200},
                    **kw,
                )
            )
            if attempt and any(step.fault == "erp_503" for step in steps):
                steps[-1].fault = "posted_after_outage"
            return steps, at + timedelta(seconds=duration)
