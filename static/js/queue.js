/* The exception queue (exceptions.html): "select all" and the count of selected rows for
 * the bulk actions, and live refresh: the rows are fetched again every 15 s (the page's
 * own filters, ?fragment=rows) while the tab is visible and nothing is selected or being
 * typed, so a person's selection is never swept away. No inline script: the CSP forbids it. */
(function () {
  "use strict";
  var EVERY_MS = 15000;

  function rows() {
    return document.getElementById("queue-rows");
  }

  function selected() {
    var box = rows();
    return box ? box.querySelectorAll("input[name=ids]:checked").length : 0;
  }

  function showCount() {
    var label = document.querySelector("[data-testid=bulk-count]");
    if (label) {
      var n = selected();
      label.textContent = n ? n + " selected:" : "Select exceptions below, then:";
    }
  }

  document.addEventListener("change", function (event) {
    var t = event.target;
    if (t && t.matches && t.matches("[data-select-all]")) {
      rows().querySelectorAll("input[name=ids]").forEach(function (box) {
        box.checked = t.checked;
      });
    }
    showCount();
  });

  function busy() {
    var form = document.getElementById("bulk");
    var active = document.activeElement;
    return selected() > 0 || (form && active && form.contains(active));
  }

  function refresh() {
    var box = rows();
    if (!box || document.visibilityState !== "visible" || busy()) {
      return;
    }
    fetch(box.getAttribute("data-live-url"), { credentials: "same-origin" })
      .then(function (r) {
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html !== null && !busy()) {
          box.innerHTML = html;
          box.setAttribute("data-refreshed", new Date().toISOString());
        }
      })
      .catch(function () {});
  }

  if (rows()) {
    window.setInterval(refresh, EVERY_MS);
  }
})();
