"""The pages' shell: the styled 404 and 500 pages (JSON under /api/), the favicon, the
skip link, and the text alternative every chart carries."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client, RequestFactory

from observatory.dashboards.templatetags.dashboards import chart_summary
from observatory.lib.guard import server_error


@pytest.mark.django_db
def test_an_unknown_page_is_the_styled_404_with_an_order_search(ops_client: Client) -> None:
    response = ops_client.get("/no-such-page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert 'class="topbar"' in html and "This page does not exist" in html
    assert re.search(r'<form role="search" method="get" action="/orders/">', html)
    assert 'id="find-order"' in html and 'name="q"' in html


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/no-such-thing", "/api/v1/orders/x/y/z", "/api/x"])
def test_an_unknown_api_path_is_a_json_404(api_client: Client, path: str) -> None:
    response = api_client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert set(response.json()) == {"detail"}


@pytest.mark.django_db
def test_a_server_error_is_the_styled_500_page_or_json_under_the_api() -> None:
    page = server_error(RequestFactory().get("/orders/"))
    assert page.status_code == 500
    html = page.content.decode()
    assert "Something went wrong on our side" in html and 'id="find-order"' in html
    assert 'href="/static/css/observatory.' in html  # extends base.html, hashed CSS
    api = server_error(RequestFactory().get("/api/v1/orders"))
    assert api.status_code == 500
    assert json.loads(api.content) == {"detail": "internal server error"}


@pytest.mark.django_db
def test_favicon_ico_leads_to_the_cached_icon(client: Client) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    icon = client.get(response["Location"], HTTP_ACCEPT_ENCODING="gzip")
    assert icon.status_code == 200
    assert icon["Content-Type"] == "image/svg+xml"
    assert "immutable" in icon["Cache-Control"]
    html = client.get("/accounts/login/").content.decode()
    assert f'<link rel="icon" href="{response["Location"]}"' in html


@pytest.mark.django_db
def test_every_page_starts_with_a_skip_link_to_its_main_content(ops_client: Client) -> None:
    html = ops_client.get("/orders/").content.decode()
    body = html[html.index("<body") :]
    first_link = re.search(r"<a [^>]*>", body)
    assert first_link and 'href="#main"' in first_link.group(0)
    assert '<main id="main"' in html


def test_a_chart_says_in_words_what_it_shows() -> None:
    fig = {
        "data": [
            {"type": "bar", "name": "orders", "x": ["Mon", "Tue", "Wed"], "y": [3, 9, 5]},
            {"type": "scatter", "name": "late", "x": ["Mon", "Tue"], "y": [0.5, 1.25]},
            {"type": "bar", "orientation": "h", "y": ["erp"], "x": [120.0]},
        ],
        "layout": {"title": {"text": "Orders a day"}},
    }
    assert chart_summary(fig) == (
        "Chart: Orders a day. orders: 3 points from Mon to Wed, lowest 3, highest 9. "
        "late: 2 points from Mon to Tue, lowest 0.5, highest 1.25. "
        "bar: 1 point from erp to erp, lowest 120, highest 120."
    )
    assert chart_summary({"data": [], "layout": {}}) == "Chart. No data."
