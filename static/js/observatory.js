/* Observatory pages: render the plotly figures the server built (figures.py).
 *
 * A figure is a <div data-figure="ID"> next to <script type="application/json" id="ID">
 * holding plotly's JSON (data, layout, config). Plotly itself is served locally from
 * static/vendor/plotly/ (plotly.js-basic-dist-min, scatter and bar only): the pages never reach the internet. */
(function () {
  "use strict";

  // Wall displays set a larger root font (observatory.css): grow the figures' text,
  // markers and height with it, so a chart reads from across the room.
  function scaleForScreen(figure) {
    var scale = parseFloat(getComputedStyle(document.documentElement).fontSize) / 15;
    if (!(scale > 1.05)) {
      return figure;
    }
    var layout = figure.layout || {};
    var grow = function (obj, key) {
      if (obj && typeof obj[key] === "number") {
        obj[key] = obj[key] * scale;
      }
    };
    grow(layout.font, "size");
    grow(layout, "height");
    ["xaxis", "yaxis"].forEach(function (axis) {
      grow(layout[axis] && layout[axis].tickfont, "size");
    });
    (figure.data || []).forEach(function (trace) {
      grow(trace.textfont, "size");
      grow(trace.marker, "size");
    });
    return figure;
  }

  // Marker labels (the swimlane's stage names) never overlap: after each drawing, a label
  // whose box meets one already kept is hidden; its hover still says it.
  function declutter(div) {
    var kept = [];
    div.querySelectorAll(".textpoint text").forEach(function (text) {
      text.style.visibility = "";
      var box = text.getBoundingClientRect();
      if (!box.width) {
        return;
      }
      var clash = kept.some(function (k) {
        return box.left < k.right && k.left < box.right && box.top < k.bottom && k.top < box.bottom;
      });
      if (clash) {
        text.style.visibility = "hidden";
      } else {
        kept.push(box);
      }
    });
  }

  function draw(div) {
    var source = document.getElementById(div.getAttribute("data-figure"));
    if (!source || div.dataset.rendered) {
      return;
    }
    var figure = scaleForScreen(JSON.parse(source.textContent));
    var config = Object.assign(
      { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] },
      figure.config || {}
    );
    window.Plotly.newPlot(div, figure.data, figure.layout, config).then(function () {
      declutter(div);
      div.on("plotly_afterplot", function () {
        declutter(div);
      });
      // a figure drawn late (off screen at first) tells the scripts that wire its events
      div.dispatchEvent(new CustomEvent("observatory:drawn", { bubbles: true }));
    });
    div.dataset.rendered = "1";
  }

  // Figures off screen wait (docs/performance.md, "Pages"): a plotly figure takes 30 to
  // 90 ms to draw, so a page of seven (/executive/) drew for half a second before it could
  // be used. Those in view (or near it) are drawn at once; the rest one per task after the
  // page's load event, or as soon as they scroll into view, or before printing.
  var waiting = [];
  var loaded = document.readyState === "complete";

  function drawWaiting() {
    while (waiting.length) {
      draw(waiting.shift());
    }
  }

  function drawNext() {
    var div = waiting.shift();
    if (div) {
      draw(div);
      window.setTimeout(drawNext, 0);
    }
  }

  var seen =
    "IntersectionObserver" in window
      ? new IntersectionObserver(
          function (entries) {
            entries.forEach(function (entry) {
              if (entry.isIntersecting) {
                seen.unobserve(entry.target);
                waiting = waiting.filter(function (d) {
                  return d !== entry.target;
                });
                draw(entry.target);
              }
            });
          },
          { rootMargin: "200px" }
        )
      : null;

  function renderFigures(root) {
    if (typeof window.Plotly === "undefined") {
      return;
    }
    var below = window.innerHeight + 200;
    root.querySelectorAll("[data-figure]").forEach(function (div) {
      if (div.dataset.rendered || waiting.indexOf(div) >= 0) {
        return;
      }
      if (!seen || div.getBoundingClientRect().top < below) {
        draw(div);
      } else {
        waiting.push(div);
        seen.observe(div);
      }
    });
    if (loaded) {
      window.setTimeout(drawNext, 0);
    }
  }

  window.addEventListener("load", function () {
    loaded = true;
    window.setTimeout(drawNext, 0);
  });
  window.addEventListener("beforeprint", drawWaiting);

  // Under 600 px a table reads as stacked cards (observatory.css, "stacked tables"): each
  // cell carries its column's header as data-label, which the CSS shows before the value.
  // Roles keep the table's semantics once the CSS makes its parts blocks.
  function labelTables(root) {
    root.querySelectorAll("table.table").forEach(function (table) {
      var heads = table.querySelectorAll("thead th");
      if (!heads.length || table.classList.contains("stacked")) {
        return;
      }
      var labels = Array.prototype.map.call(heads, function (th) {
        th.setAttribute("role", "columnheader");
        return th.textContent.replace(/\s+/g, " ").trim();
      });
      table.setAttribute("role", "table");
      table.querySelectorAll("tr").forEach(function (tr) {
        tr.setAttribute("role", "row");
        var column = 0;
        tr.querySelectorAll(":scope > td").forEach(function (td) {
          td.setAttribute("role", "cell");
          if (!td.hasAttribute("data-label")) {
            td.setAttribute("data-label", labels[column] || "");
          }
          column += td.colSpan || 1;
        });
      });
      table.classList.add("stacked");
    });
  }

  function enhance(root) {
    labelTables(root);
    renderFigures(root);
  }

  window.Observatory = { renderFigures: renderFigures, drawWaiting: drawWaiting };
  document.addEventListener("DOMContentLoaded", function () {
    enhance(document);
  });
  // the ops page swaps its live fragment in (ops.js)
  document.addEventListener("ops:updated", function (event) {
    labelTables(event.target);
  });
})();
