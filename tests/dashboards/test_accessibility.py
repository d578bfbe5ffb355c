"""axe-core on every page, at a laptop's width and a phone's: no serious or critical
violation (WCAG 2.x A and AA, and axe's best practices).

axe-core is vendored from npm under ``tests/vendor/axe-core/`` with its license (MPL-2.0).
The pages' Content-Security-Policy allows only their own scripts, so the test's browser
context bypasses it to inject axe; the pages themselves run under it as always.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.dashboards.test_browser import (  # noqa: F401  (fixtures)
    LAPTOP,
    PHONE,
    Site,
    browser,
    seeded_live,
    shot,
    sign_in,
)

AXE = Path(__file__).resolve().parents[1] / "vendor" / "axe-core" / "axe.min.js"
#: the impacts that fail the test
BLOCKING = {"serious", "critical"}

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def pages(site: Site) -> list[tuple[str, str]]:
    """(name, path) of every page a signed-in user reaches."""
    return [
        ("ops", "/"),
        ("orders", "/orders/"),
        ("order", f"/orders/{site.tx_id}/"),
        ("exceptions", "/exceptions/"),
        ("executive", "/executive/"),
        ("systems", "/systems/"),
        ("system", "/systems/shopify/"),
        ("alerts", "/alerts/"),
        ("alert-rule-form", "/alerts/rules/new/"),
        ("alert-channel-form", "/alerts/channels/new/"),
        ("alert-silence-form", "/alerts/silences/new/"),
        ("api-docs", "/api/v1/docs"),
        ("not-found", "/no-such-page/"),
    ]


def axe_violations(page: Any) -> list[str]:
    """The page's serious and critical violations, one line each."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "() => axe.run(document, {resultTypes: ['violations']})"
        ".then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " targets: v.nodes.slice(0, 4).map(n => n.target.join(' ') +"
        " (n.any[0] && n.any[0].data && n.any[0].data.contrastRatio ?"
        " ` ${n.any[0].data.fgColor} on ${n.any[0].data.bgColor}: ${n.any[0].data.contrastRatio}`"
        " : ''))})))"
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {'; '.join(v['targets'])}"
        for v in result
        if v["impact"] in BLOCKING
    ]


def settle(page: Any) -> None:
    """Wait until the page's figures are drawn (axe reads what plotly drew)."""
    page.wait_for_load_state("networkidle")
    for figure in page.query_selector_all("[data-figure]"):
        figure.wait_for_selector(".main-svg", timeout=15_000)


@pytest.mark.parametrize("width", ["laptop", "phone"])
def test_every_page_passes_axe(browser: Any, seeded_live: Site, width: str) -> None:  # noqa: F811
    viewport = LAPTOP if width == "laptop" else PHONE
    base = seeded_live.url
    found: dict[str, list[str]] = {}
    errors: list[str] = []
    context = browser.new_context(viewport=viewport, bypass_csp=True)
    try:
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{base}/accounts/login/")
        found["login"] = axe_violations(page)
        shot(page, f"axe-login-{width}")
        sign_in(page, base)
        for name, path in pages(seeded_live):
            page.goto(f"{base}{path}")
            settle(page)
            found[name] = axe_violations(page)
            shot(page, f"axe-{name}-{width}")
    finally:
        context.close()
    failing = {name: lines for name, lines in found.items() if lines}
    report = "\n".join(f"{name}: {line}" for name, lines in failing.items() for line in lines)
    assert not failing, f"axe at {viewport['width']} px:\n{report}"
    assert not errors, errors


OVERLAPS = """() => {
  const boxes = [...document.querySelectorAll('#swimlane .textpoint text')]
    .filter(t => t.textContent && getComputedStyle(t).visibility !== 'hidden')
    .map(t => t.getBoundingClientRect()).filter(b => b.width);
  let n = 0;
  boxes.forEach((a, i) => boxes.slice(i + 1).forEach(b => {
    if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) n++;
  }));
  return [boxes.length, n];
}"""


@pytest.mark.parametrize("width", ["laptop", "phone"])
def test_swimlane_labels_never_overlap_and_tables_stack_on_a_phone(
    browser: Any,  # noqa: F811
    seeded_live: Site,  # noqa: F811
    width: str,
) -> None:
    viewport = LAPTOP if width == "laptop" else PHONE
    base = seeded_live.url
    context = browser.new_context(viewport=viewport)
    try:
        page = context.new_page()
        sign_in(page, base)
        page.goto(f"{base}/orders/{seeded_live.tx_id}/")
        settle(page)
        labels, overlapping = page.evaluate(OVERLAPS)
        assert labels >= 2 and overlapping == 0, (labels, overlapping)
        label = page.get_attribute("#swimlane", "aria-label") or ""
        assert label.startswith("Chart.") and "points from" in label
        page.goto(f"{base}/exceptions/")
        settle(page)
        cell = page.locator("table.table tbody td[data-label='Age']").first
        display = cell.evaluate("td => getComputedStyle(td).display")
        assert display == ("block" if width == "phone" else "table-cell")
        # nothing is cut off sideways
        assert page.evaluate("() => document.documentElement.scrollWidth") <= viewport["width"]
        shot(page, f"stacked-exceptions-{width}")
    finally:
        context.close()
