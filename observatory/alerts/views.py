"""The /alerts/ pages (docs/alerts.md). Thin: read through ``queries``, write
through ``actions``.

Everyone signed in reads. Acknowledging and silencing take the ``ops`` or ``admin``
group (or staff); rules and channels take the ``admin`` group (or staff). The signed
acknowledge link from a Slack message or an email works without signing in: the
signature is the permission, and it acknowledges only on the button's POST, so link
previews and mail scanners that fetch it change nothing.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from observatory.alerts import actions, queries
from observatory.alerts.forms import ChannelForm, RuleForm, SilenceForm
from observatory.alerts.models import Alert, Channel, Rule, Silence
from observatory.alerts.preview import preview
from observatory.lib.clock import now

ACTING_GROUPS = ("ops", "admin")
CONFIG_GROUPS = ("admin",)


def _in_groups(user: Any, groups: tuple[str, ...]) -> bool:
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_superuser or user.is_staff:
        return True
    return bool(user.groups.filter(name__in=groups).exists())


def can_act(user: Any) -> bool:
    """May ``user`` acknowledge alerts and manage silences?"""
    return _in_groups(user, ACTING_GROUPS)


def can_configure(user: Any) -> bool:
    """May ``user`` edit rules and channels and send test messages?"""
    return _in_groups(user, CONFIG_GROUPS)


def _need(allowed: bool) -> None:
    if not allowed:
        raise PermissionDenied("this needs the ops or admin group")


def _back(request: HttpRequest, default: str) -> HttpResponseRedirect:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return HttpResponseRedirect(target)
    return HttpResponseRedirect(default)


def _perms(request: HttpRequest) -> dict[str, bool]:
    return {"can_act": can_act(request.user), "can_configure": can_configure(request.user)}


@require_GET
@login_required
def index(request: HttpRequest) -> HttpResponse:
    """Firing, pending, acknowledged and resolved alerts; silences, channels and rules."""
    at = now()
    board = queries.board(at)
    context = {
        "board": board,
        "rules": list(Rule.objects.prefetch_related("channels").order_by("name")),
        "channels": list(Channel.objects.order_by("name")),
        "silences": queries.live_silences(at),
        "now": at,
        **_perms(request),
    }
    return render(request, "alerts/index.html", context)


@require_GET
@login_required
def alert(request: HttpRequest, pk: int) -> HttpResponse:
    """One alert: what it found, its history, every notification and delivery attempt."""
    row = queries.alert_detail(pk)
    if row is None:
        raise Http404("no such alert")
    return render(
        request,
        "alerts/alert.html",
        {"alert": row, "silence_initial": SilenceForm.initial_for(row.labels), **_perms(request)},
    )


@require_POST
@login_required
def alert_ack(request: HttpRequest, pk: int) -> HttpResponse:
    _need(can_act(request.user))
    _acknowledge(request, pk, request.user.get_username())
    return _back(request, reverse("alerts:alert", args=[pk]))


def _acknowledge(request: HttpRequest, pk: int, who: str) -> None:
    try:
        actions.do_acknowledge(pk, who)
        messages.success(request, f"Alert {pk} acknowledged: no more reminders.")
    except actions.AlertNotFound:
        raise Http404("no such alert") from None
    except actions.InvalidTransition as exc:
        messages.warning(request, str(exc).capitalize() + ".")


@require_http_methods(["GET", "POST"])
def ack_link(request: HttpRequest, pk: int, token: str) -> HttpResponse:
    """The signed link in Slack and email messages: shows the alert, acknowledges on POST."""
    if actions.ack_token_alert(token) != pk:
        raise Http404("this link is not valid (or has expired)")
    row = get_object_or_404(Alert.objects.select_related("rule"), pk=pk)
    if request.method == "POST":
        user: Any = request.user
        who = user.get_username() if user.is_authenticated else "someone with the link"
        try:
            actions.do_acknowledge(pk, who)
            done = "acknowledged"
        except actions.InvalidTransition:
            done = "resolved"
        row.refresh_from_db()
        return render(request, "alerts/ack_link.html", {"alert": row, "done": done, "token": token})
    return render(request, "alerts/ack_link.html", {"alert": row, "done": "", "token": token})


# --- rules ------------------------------------------------------------------------------------


def _rule_form(request: HttpRequest, rule: Rule | None) -> RuleForm:
    data = request.POST if request.method == "POST" else None
    return RuleForm(data, instance=rule, systems=queries.known_systems())


@require_http_methods(["GET", "POST"])
@login_required
def rule_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """A rule's form (admins), or what it says (everyone else). "Preview" judges the
    unsaved rule against the current data and shows what it would fire for."""
    rule = get_object_or_404(Rule, pk=pk) if pk is not None else None
    found = None
    if request.method == "POST":
        _need(can_configure(request.user))
        form = _rule_form(request, rule)
        if form.is_valid():
            saved = form.save(commit=False)
            if "preview" in request.POST:
                found = preview(saved, now())
            else:
                if rule is None:
                    saved.created_by = request.user.get_username()
                saved.save()
                form.save_m2m()
                messages.success(request, f"Rule “{saved.name}” saved.")
                return redirect(reverse("alerts:index") + "#rules")
    else:
        form = _rule_form(request, rule)
    return render(
        request,
        "alerts/rule_form.html",
        {"form": form, "rule": rule, "preview": found, **_perms(request)},
    )


@require_POST
@login_required
def rule_preview(request: HttpRequest) -> HttpResponse:
    """The preview alone, for the form's script: the fragment it shows beside the form
    (the form's errors, one per problem, when the rule is not complete yet)."""
    _need(can_configure(request.user))
    rule = None
    pk = request.POST.get("rule_id", "")
    if pk.isdigit():
        rule = Rule.objects.filter(pk=int(pk)).first()
    form = _rule_form(request, rule)
    found = preview(form.save(commit=False), now()) if form.is_valid() else None
    return render(request, "alerts/_preview.html", {"form": form, "preview": found})


# --- channels ---------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@login_required
def channel_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    channel = get_object_or_404(Channel, pk=pk) if pk is not None else None
    if request.method == "POST":
        _need(can_configure(request.user))
        before = _destination(channel) if channel else None
        form = ChannelForm(request.POST, instance=channel)
        if form.is_valid():
            saved = form.save(commit=False)
            if channel is None:
                saved.created_by = request.user.get_username()
            elif before != _destination(saved):
                saved.failing, saved.failing_reason, saved.failing_since = False, "", None
            saved.save()
            messages.success(request, f"Channel “{saved.name}” saved.")
            return redirect(reverse("alerts:index") + "#channels")
    else:
        form = ChannelForm(instance=channel, reveal=can_configure(request.user))
    attempts = queries.recent_attempts(channel.id) if channel else []
    return render(
        request,
        "alerts/channel_form.html",
        {"form": form, "channel": channel, "attempts": attempts, **_perms(request)},
    )


def _destination(c: Channel) -> tuple[Any, ...]:
    """Where a channel sends: a change clears its failing mark."""
    return (c.kind, c.webhook_url, c.bot_token, c.slack_channel, list(c.to), c.routing_key,
            c.secret)  # fmt: skip


@require_POST
@login_required
def channel_test(request: HttpRequest, pk: int) -> HttpResponse:
    _need(can_configure(request.user))
    channel = get_object_or_404(Channel, pk=pk)
    n = actions.do_send_test(channel.id, request.user.get_username())
    if n.status == "sent":
        messages.success(request, f"Test message sent to “{channel.name}”.")
    else:
        messages.error(request, f"Test message to “{channel.name}” failed: {n.last_error}")
    return _back(request, reverse("alerts:index") + "#channels")


# --- silences ---------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@login_required
def silence_new(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        _need(can_act(request.user))
        form = SilenceForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            actions.do_create_silence(
                matchers=data["matchers"],
                starts_at=data["starts_at"],
                ends_at=data["ends_at"],
                comment=data["comment"],
                who=request.user.get_username(),
            )
            messages.success(request, "Silence created.")
            return redirect(reverse("alerts:index") + "#silences")
    else:
        labels = {
            k: request.GET.get(k, "") for k in ("rule", "system", "stage") if k in request.GET
        }
        form = SilenceForm(initial=SilenceForm.initial_for(labels))
    return render(request, "alerts/silence_form.html", {"form": form, **_perms(request)})


@require_POST
@login_required
def silence_expire(request: HttpRequest, pk: int) -> HttpResponse:
    _need(can_act(request.user))
    get_object_or_404(Silence, pk=pk)
    actions.do_expire_silence(pk)
    messages.success(request, f"Silence {pk} ended.")
    return _back(request, reverse("alerts:index") + "#silences")
