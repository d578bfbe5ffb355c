/* The alert rule and channel forms (templates/alerts/rule_form.html, channel_form.html):
 * progressive enhancement. Without this script every field shows and "Preview" reloads the
 * page; with it, only the fields the chosen kind uses show, the KPI's figures follow the
 * KPI, and the preview ("would this fire now, and for what?") refreshes as you type.
 * No inline script anywhere: the Content-Security-Policy forbids it. */
(function () {
  "use strict";

  function parse(text) {
    try {
      return JSON.parse(text || "{}");
    } catch (e) {
      return {};
    }
  }

  function words(id) {
    var s = id.replace(/_/g, " ");
    return s.charAt(0).toUpperCase() + s.slice(1);
  }

  // Show the fields the chosen kind uses; hide those only other kinds use.
  function byKind(form) {
    var kinds = parse(form.getAttribute("data-kind-fields"));
    var select = form.querySelector("[name=kind]");
    if (!select) {
      return;
    }
    var specific = {};
    Object.keys(kinds).forEach(function (k) {
      kinds[k].forEach(function (f) {
        specific[f] = true;
      });
    });
    function apply() {
      var used = kinds[select.value] || [];
      Object.keys(specific).forEach(function (name) {
        var box = form.querySelector('[data-field="' + name + '"]');
        if (box) {
          box.hidden = used.indexOf(name) < 0;
        }
      });
      // a field whose meaning depends on the kind says what it means for this one
      form.querySelectorAll("[data-help]").forEach(function (input) {
        var help = form.querySelector('[data-help-for="' + input.name + '"]');
        var texts = parse(input.dataset.help);
        if (help && texts[select.value]) {
          help.textContent = texts[select.value];
        }
      });
    }
    select.addEventListener("change", apply);
    apply();
  }

  // The KPI's figures only: the other KPIs' option groups are hidden.
  function figuresFollowKpi(form) {
    var kpi = form.querySelector("[name=kpi]");
    var field = form.querySelector("[name=field]");
    if (!kpi || !field) {
      return;
    }
    function apply() {
      var label = kpi.value ? words(kpi.value) : "";
      var keep = false;
      field.querySelectorAll("optgroup").forEach(function (group) {
        var mine = group.label === label;
        group.hidden = !mine;
        group.disabled = !mine;
        if (mine) {
          group.querySelectorAll("option").forEach(function (o) {
            if (o.selected) {
              keep = true;
            }
          });
        }
      });
      if (!keep) {
        field.value = "";
      }
    }
    kpi.addEventListener("change", apply);
    apply();
  }

  // "Would this fire now, and for what?": the server judges the unsaved rule.
  function preview(form) {
    var url = form.getAttribute("data-preview-url");
    var box = document.getElementById("rule-preview");
    if (!url || !box || !window.fetch) {
      return;
    }
    var timer = null;
    var seq = 0;
    function run() {
      var mine = ++seq;
      box.setAttribute("aria-busy", "true");
      fetch(url, {
        method: "POST",
        body: new FormData(form),
        credentials: "same-origin",
        headers: { "X-Requested-With": "fetch" },
      })
        .then(function (r) {
          return r.text();
        })
        .then(function (html) {
          if (mine === seq) {
            box.innerHTML = html;
            box.removeAttribute("aria-busy");
          }
        })
        .catch(function () {
          box.removeAttribute("aria-busy");
        });
    }
    function soon() {
      clearTimeout(timer);
      timer = setTimeout(run, 400);
    }
    form.addEventListener("change", soon);
    form.addEventListener("input", soon);
    var button = form.querySelector("[data-action=preview]");
    if (button) {
      button.addEventListener("click", function (ev) {
        ev.preventDefault();
        clearTimeout(timer);
        run();
      });
    }
  }

  document.querySelectorAll("form[data-rule-form]").forEach(function (form) {
    byKind(form);
    figuresFollowKpi(form);
    preview(form);
  });
  document.querySelectorAll("form[data-channel-form]").forEach(byKind);
})();
