/* Times in the reader's time zone, and the time-range picker (templates/_timerange.html).
 *
 * The server writes every time in UTC, as <time datetime="...Z" data-local>. Unless the
 * reader chose UTC, this shows them in the browser's time zone. The choice is remembered
 * (localStorage "observatory.tz"); ?tz=utc or ?tz=local in a URL sets it. A custom range
 * is typed in the chosen zone and sent as UTC (ISO 8601, "Z"). No inline script: the
 * pages' Content-Security-Policy forbids it. */
(function () {
  "use strict";

  var KEY = "observatory.tz";

  function stored() {
    try {
      return window.localStorage.getItem(KEY);
    } catch (e) {
      return null;
    }
  }

  function store(mode) {
    try {
      window.localStorage.setItem(KEY, mode);
    } catch (e) {
      /* private mode: the choice lasts for this page only */
    }
  }

  var fromUrl = new URLSearchParams(window.location.search).get("tz");
  if (fromUrl === "utc" || fromUrl === "local") {
    store(fromUrl);
  }
  var mode = fromUrl === "utc" || fromUrl === "local" ? fromUrl : stored() || "local";

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function zoneName(d) {
    try {
      var parts = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" }).formatToParts(d);
      for (var i = 0; i < parts.length; i++) {
        if (parts[i].type === "timeZoneName") {
          return parts[i].value;
        }
      }
    } catch (e) {
      /* an old browser: no zone name */
    }
    return "local";
  }

  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  function show(el) {
    if (!el.hasAttribute("data-utc-text")) {
      el.setAttribute("data-utc-text", el.textContent);
    }
    var d = new Date(el.getAttribute("datetime"));
    if (mode === "utc" || isNaN(d.getTime())) {
      el.textContent = el.getAttribute("data-utc-text");
      return;
    }
    el.textContent =
      MONTHS[d.getMonth()] + " " + d.getDate() + ", " + pad(d.getHours()) + ":" +
      pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + " " + zoneName(d);
    el.title = el.getAttribute("data-utc-text");
  }

  /* "2026-12-06T21:40" in UTC <-> in the browser's zone */
  function utcToLocalInput(value) {
    var d = new Date(value + ":00Z");
    if (isNaN(d.getTime())) {
      return value;
    }
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" +
      pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  function inputToIso(value) {
    if (!value) {
      return "";
    }
    if (mode === "utc") {
      return value + ":00Z";
    }
    var d = new Date(value); /* datetime-local text without a zone: local time */
    return isNaN(d.getTime()) ? value : d.toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  function render(root) {
    var times = (root || document).querySelectorAll("time[data-local]");
    for (var i = 0; i < times.length; i++) {
      show(times[i]);
    }
    var inputs = document.querySelectorAll("[data-timerange-form] input[type=datetime-local]");
    for (var j = 0; j < inputs.length; j++) {
      var utc = inputs[j].getAttribute("data-utc-value");
      if (utc) {
        inputs[j].value = mode === "utc" ? utc : utcToLocalInput(utc);
      }
    }
    var switches = document.querySelectorAll("[data-tz-switch]");
    for (var k = 0; k < switches.length; k++) {
      switches[k].setAttribute("aria-pressed", mode === "utc" ? "true" : "false");
      switches[k].textContent = mode === "utc" ? "Times in UTC" : "Times in " + zoneName(new Date());
    }
    document.documentElement.setAttribute("data-tz", mode);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-tz-switch]") : null;
    if (!button) {
      return;
    }
    mode = mode === "utc" ? "local" : "utc";
    store(mode);
    var url = new URL(window.location.href);
    url.searchParams.set("tz", mode);
    window.history.replaceState(null, "", url.toString());
    render();
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.hasAttribute || !form.hasAttribute("data-timerange-form")) {
      return;
    }
    event.preventDefault();
    var params = new URLSearchParams(new FormData(form));
    params.set("from", inputToIso(form.elements.from.value));
    params.set("to", inputToIso(form.elements.to.value));
    window.location.search = params.toString();
  });

  /* the ops dashboard swaps its live part in: show its times too */
  document.addEventListener("ops:updated", function (event) {
    render(event.target);
  });

  window.ObservatoryTime = { render: render, mode: function () { return mode; } };
  render();
})();
