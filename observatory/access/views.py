"""The sign-in page, throttled (``throttle.py``)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse

from observatory.access import throttle


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

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        throttle.record_success(form.get_user().get_username())
        return super().form_valid(form)
