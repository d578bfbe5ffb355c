"""The web pages (docs/architecture.md, "Pages"). Thin: read through ``queries``, draw through
``figures``, write through the owning app's actions. Every page needs a signed-in user."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from observatory.dashboards import figures, order_list, queries, roles, work_queue
from observatory.lib.clock import now
from observatory.lib.download import attach
from observatory.lib.timerange import ALL, range_or_default
from observatory.triage import actions as triage_actions

#: The highest page number a list takes (past the end is an empty page anyway).
MAX_PAGE = 100_000


@require_GET
@login_required
def orders(request: HttpRequest) -> HttpResponseBase:
    """Find an order by any key; a whole key naming exactly one order opens it."""
    q = request.GET.get("q", "").strip()[:256]
    result = queries.search_orders(q) if q else None
    if result is not None and result.exact is not None and "list" not in request.GET:
        return redirect("dashboards:order", pk=result.exact.id)
    tr, error = range_or_default(request.GET, at=now(), default=ALL, allow_all=True)
    context: dict[str, Any] = {
        "q": q,
        "search_q": q,
        "result": result,
        "listing": None,
        "tr": tr,
        "range_error": error,
    }
    if not q:
        # the list behind every number on the dashboards (order_list.py); the page's time
        # range picker bounds it unless the link gave its own window
        f = order_list.OrderFilters.from_params(request.GET)
        if tr.key != ALL and not (f.since or f.until):
            f = replace(f, since=tr.since, until=tr.until)
        if request.GET.get("format") == "csv":
            return _csv_response(order_list.csv_rows(f), f"observatory-orders-{now():%Y%m%d}")
        context.update(
            listing=order_list.order_list(f, page=_page_number(request)),
            conditions=order_list.CONDITIONS,
            sorts=order_list.SORTS,
            stages=order_list.STAGE_CHOICES,
            tx_kinds=order_list.TX_KINDS,
        )
    return render(request, "dashboards/orders.html", context)


def _csv_response(rows: Iterable[list[Any]], name: str) -> StreamingHttpResponse:
    """Rows streamed as a CSV download (the list may be long: never held whole)."""
    buffer = _Echo()
    writer = csv.writer(buffer)
    response = StreamingHttpResponse(
        (writer.writerow(r) for r in rows), content_type="text/csv; charset=utf-8"
    )
    attach(response, f"{name}.csv")
    return response


class _Echo:
    """A file-like object whose ``write`` hands the line back (csv.writer -> stream)."""

    def write(self, value: str) -> str:
        return value


@require_GET
@login_required
def order(request: HttpRequest, pk: int) -> HttpResponse:
    """One order: timeline, swimlane of hops, keys, exceptions, each hop's attributes."""
    tx = queries.transaction_or_winner(pk)
    if tx is None:
        raise Http404("no such transaction")
    if tx.id != pk:
        messages.info(request, f"Transaction {pk} was merged into this one.")
        return redirect("dashboards:order", pk=tx.id)
    page = queries.order_page(tx, hop_page=_page_number(request, "hops"))
    chart = figures.figure_json(figures.swimlane(page.hops, page.hop_stages))
    return render(request, "dashboards/order.html", {"page": page, "chart": chart})


@require_GET
@login_required
def exceptions(request: HttpRequest) -> HttpResponseBase:
    """The exception queue: age buckets, filters, search and sorting kept in every link,
    many selected at once for an action, CSV; ``?fragment=rows`` is the table alone (the
    page polls it to stay live)."""
    filters = queries.QueueFilters.from_params(request.GET)
    tr, error = range_or_default(request.GET, at=now(), default=ALL, allow_all=True)
    opened = None if tr.key == ALL else (tr.since, tr.until)
    if request.GET.get("format") == "csv":
        rows = work_queue.csv_rows(filters, opened=opened)
        return _csv_response(rows, f"observatory-exceptions-{now():%Y%m%d}")
    queue = queries.exception_queue(filters, page=_page_number(request), opened=opened)
    acting = roles.can_act(request.user)
    context = {
        "queue": queue,
        "tr": tr,
        "range_error": error,
        "sorts": {k: words for k, (words, _) in queries.QUEUE_SORTS.items()},
        "people": work_queue.people() if acting else [],
        "teams": work_queue.teams(queue.owners) if acting else [],
    }
    if request.GET.get("fragment") == "rows":
        # the row's own buttons come back to the page, not to this fragment
        page = request.GET.copy()
        page.pop("fragment", None)
        context["next_url"] = f"{request.path}?{page.urlencode()}" if page else request.path
        return render(request, "dashboards/_queue_rows.html", context)
    return render(request, "dashboards/exceptions.html", context)


@require_GET
@login_required
def exception(request: HttpRequest, pk: int) -> HttpResponse:
    """One exception: what it is, its order (both, for a conflict), its history, and for
    people who act, a note form and the actions."""
    page = work_queue.issue_page(pk)
    if page is None:
        raise Http404("no such exception")
    acting = roles.can_act(request.user)
    return render(
        request,
        "dashboards/exception.html",
        {
            "page": page,
            "row": page.row,
            "issue": page.row.issue,
            "people": work_queue.people() if acting else [],
            "teams": work_queue.teams() if acting else [],
        },
    )


@require_POST
@login_required
def exceptions_bulk(request: HttpRequest) -> HttpResponse:
    """Acknowledge, resolve or assign the selected exceptions, then go back."""
    if not roles.can_act(request.user):
        raise PermissionDenied("only the ops and admin groups act on exceptions")
    back = _next_url(request, reverse("dashboards:exceptions"))
    ids = [int(i) for i in request.POST.getlist("ids") if i.isdigit() and len(i) < 19]
    verb = request.POST.get("action", "")
    if verb not in triage_actions.BULK_VERBS:
        messages.warning(request, "Choose an action: acknowledge, resolve or assign.")
        return HttpResponseRedirect(back)
    if not ids:
        messages.warning(request, "Select at least one exception first.")
        return HttpResponseRedirect(back)
    note = request.POST.get("note", "").strip()[:255]
    assignee, team = None, None
    if verb == "assign":
        name = request.POST.get("assignee", "").strip()
        team = request.POST.get("team", "").strip()[:64] or None
        if name:
            assignee = get_user_model().objects.filter(username=name, is_active=True).first()
            if assignee is None:
                messages.warning(request, f"Nobody is called {name!r}: nothing was assigned.")
                return HttpResponseRedirect(back)
        if assignee is None and team is None:
            messages.warning(request, "Choose a person, a team or both to assign to.")
            return HttpResponseRedirect(back)
    result = triage_actions.do_bulk(
        ids, verb, request.user.get_username(), note=note, assignee=assignee, team=team
    )
    done = {"acknowledge": "acknowledged", "resolve": "resolved", "assign": "assigned"}[verb]
    text = f"{len(result.changed)} exception{'s' if len(result.changed) != 1 else ''} {done}."
    if result.unchanged:
        text += f" {len(result.unchanged)} left as they were (already {done} or resolved)."
    messages.success(request, text)
    return HttpResponseRedirect(back)


@require_POST
@login_required
def exception_note(request: HttpRequest, pk: int) -> HttpResponse:
    """Add a note to an exception's history."""
    if not roles.can_act(request.user):
        raise PermissionDenied("only the ops and admin groups write notes")
    try:
        triage_actions.do_add_note(pk, request.user.get_username(), request.POST.get("text", ""))
        messages.success(request, "Note added.")
    except triage_actions.IssueNotFound:
        raise Http404("no such exception") from None
    except ValueError:
        messages.warning(request, "A note needs some text.")
    return HttpResponseRedirect(reverse("dashboards:exception", args=[pk]))


@require_POST
@login_required
def exception_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Acknowledge or resolve an exception, then go back where the button was."""
    if not roles.can_act(request.user):
        raise PermissionDenied("only the ops and admin groups act on exceptions")
    actor = request.user.get_username()
    try:
        if action == "acknowledge":
            triage_actions.do_acknowledge(pk, actor)
            messages.success(request, f"Exception {pk} acknowledged.")
        else:
            triage_actions.do_resolve(pk, actor, note=f"resolved by {actor} on the web page")
            messages.success(request, f"Exception {pk} resolved.")
    except triage_actions.IssueNotFound:
        raise Http404("no such exception") from None
    except triage_actions.InvalidTransition as exc:
        messages.warning(request, str(exc).capitalize() + ".")
    return HttpResponseRedirect(_next_url(request, reverse("dashboards:exceptions")))


def _page_number(request: HttpRequest, name: str = "page") -> int:
    raw = request.GET.get(name, "1").strip()
    return min(max(1, int(raw)), MAX_PAGE) if raw.isdigit() and len(raw) < 10 else 1


def _next_url(request: HttpRequest, default: str) -> str:
    """The page to return to: a local ``next`` only (never an open redirect)."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default
