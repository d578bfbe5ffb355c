"""The sign-in page, throttled (``throttle.py``)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from observatory.access import throttle

#: Where a member of a group lands after signing in without asking for a page (the groups
#: of dashboards/roles.py): executives on their overview. Everyone else: the ops dashboard.
LANDING_BY_GROUP = {"executive": "executive"}
#: Groups whose members land on the ops dashboard even when also in a group above.
OPS_GROUPS = ("ops", "admin")


class LoginView(auth_views.LoginView):
    """Django's sign-in, refusing with 429 and a clear message once a username or a client
    address has failed too often."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        username = str(request.POST.get("username", ""))[:150]
        left = throttle.locked_for(username, throttle.client_address(request))
        if left > 0:
            form = self.get_form()
            form.errors.clear()
            form.add_error(None, throttle.refusal(left))
            response = self.render_to_response(self.get_context_data(form=form))
            response.status_code = 429
            response["Retry-After"] = str(int(left) + 1)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        username = str(self.request.POST.get("username", ""))[:150]
        throttle.record_failure(username, throttle.client_address(self.request))
        return super().form_invalid(form)

    def get_success_url(self) -> str:
        """The page asked for (``next``), else the user's landing page. ``next=/`` counts as
        no wish: it is where every bare visit to the site is sent to sign in from."""
        asked = self.get_redirect_url()
        if asked and asked != "/":
            return asked
        return self.landing() or asked or self.get_default_redirect_url()

    def landing(self) -> str:
        user: Any = self.request.user
        if user.is_staff or user.is_superuser:
            return ""
        groups = set(user.groups.values_list("name", flat=True))
        if groups & set(OPS_GROUPS):
            return ""
        for group, url_name in LANDING_BY_GROUP.items():
            if group in groups:
                return reverse(url_name)
        return ""

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        throttle.record_success(form.get_user().get_username())
        return super().form_valid(form)
