"""Every page in a real browser: warm load time (p95) and bytes transferred, and the order
page and /executive/ on a cold cache (docs/performance.md, "Pages").

    .venv/bin/python bench/pages.py [--url http://127.0.0.1:8000] [--user admin]
        [--password admin] [--loads 20]

Runs against a server that is already up with data in it (``make run``, a few minutes
after its start, so the history is in). Debian's chromium (``make browser``) signs in, then
for each page loads it once to fill its cache, then ``--loads`` more times: the load time is
the navigation's ``loadEventEnd`` (HTML, scripts, styles and the charts in view drawn by
the time the load event fires; those below the fold are drawn after it), the bytes are what the network carried (``transferSize`` of the
navigation and of every resource: compressed bytes plus headers; 0 for what came from the
cache). The cold figures come from a fresh browser context with an empty cache.

Chromium asks a plain-HTTP origin for gzip only (brotli needs HTTPS), so these are the
gzip sizes; a browser over TLS gets the brotli files, about 15 % smaller for plotly.js.
Targets: every page under 500 ms warm on the machine it runs on, and under 1 MB.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any
from urllib.parse import urljoin

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
TARGET_MS = 500
TARGET_BYTES = 1_000_000

MEASURE = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const resources = performance.getEntriesByType('resource');
  const bytes = nav.transferSize + resources.reduce((n, r) => n + r.transferSize, 0);
  const decoded = nav.decodedBodySize + resources.reduce((n, r) => n + r.decodedBodySize, 0);
  return {ms: nav.loadEventEnd - nav.startTime, bytes: bytes, decoded: decoded};
}"""


def pages(page: Any, base: str) -> list[tuple[str, str]]:
    """The pages, with an order and a system picked from the lists."""
    page.goto(urljoin(base, "/orders/"))
    order = page.eval_on_selector(
        "a[href^='/orders/'][href$='/']:not([href='/orders/'])", "a => a.getAttribute('href')"
    )
    page.goto(urljoin(base, "/systems/"))
    system = page.eval_on_selector("table a[href^='/systems/']", "a => a.getAttribute('href')")
    return [
        ("/", "/"),
        ("/orders/", "/orders/"),
        ("order page", order),
        ("/exceptions/", "/exceptions/"),
        ("/executive/", "/executive/"),
        ("/systems/", "/systems/"),
        ("system page", system),
        ("/alerts/", "/alerts/"),
        ("/alerts/rules/new/", "/alerts/rules/new/"),
        ("/api/v1/docs", "/api/v1/docs"),
        ("404", "/no-such-page/"),
    ]


def load(page: Any, url: str) -> dict[str, float]:
    page.goto(url, wait_until="load")
    return dict(page.evaluate(MEASURE))


def sign_in(page: Any, base: str, user: str, password: str) -> None:
    page.goto(urljoin(base, "/accounts/login/"))
    page.fill("#id_username", user)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("load")
    if "/accounts/login/" in page.url:
        sys.exit(f"could not sign in as {user}")


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="admin")
    parser.add_argument("--loads", type=int, default=20, help="warm loads per page")
    opts = parser.parse_args()
    base = opts.url.rstrip("/") + "/"
    failed = False
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        page = context.new_page()
        sign_in(page, base, opts.user, opts.password)
        listed = pages(page, base)
        print(
            f"{'page':<22}{'warm p95 ms':>12}{'median ms':>11}{'warm bytes':>12}{'cold bytes':>12}"
        )
        cold_pages = {"order page", "/executive/"}
        for name, path in listed:
            url = urljoin(base, path)
            load(page, url)  # fills the cache
            runs = [load(page, url) for _ in range(opts.loads)]
            ms = [r["ms"] for r in runs]
            warm_bytes = statistics.median(r["bytes"] for r in runs)
            cold = ""
            if name in cold_pages:
                fresh = browser.new_context(viewport={"width": 1440, "height": 900})
                fresh.add_cookies(context.cookies())
                cold_page = fresh.new_page()
                first = load(cold_page, url)
                cold = f"{first['bytes']:>12,.0f}"
                print(f"{'  cold: ' + name:<22}{first['ms']:>12.0f}{'':>11}{'':>12}{cold}")
                fresh.close()
            worst = p95(ms)
            flag = "" if worst < TARGET_MS and warm_bytes < TARGET_BYTES else "  over target"
            failed = failed or bool(flag)
            print(
                f"{name:<22}{worst:>12.0f}{statistics.median(ms):>11.0f}{warm_bytes:>12,.0f}{cold}{flag}"
            )
        browser.close()
    print("every page within its targets" if not failed else "some page is over its target")


if __name__ == "__main__":
    main()
