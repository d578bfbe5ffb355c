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

  function renderFigures(root) {
    if (typeof window.Plotly === "undefined") {
      return;
    }
    root.querySelectorAll("[data-figure]").forEach(function (div) {
      var source = document.getElementById(div.getAttribute("data-figure"));
      if (!source || div.dataset.rendered) {
        return;
      }
      var figure = scaleForScreen(JSON.parse(source.textContent));
      var config = Object.assign(
        { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] },
        figure.config || {}
      );
      window.Plotly.newPlot(div, figure.data, figure.layout, config);
      div.dataset.rendered = "1";
    });
  }

  window.Observatory = { renderFigures: renderFigures };
  document.addEventListener("DOMContentLoaded", function () {
    renderFigures(document);
  });
})();
