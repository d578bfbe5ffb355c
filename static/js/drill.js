/* Drill-down from a chart: a point whose customdata ends with a local address ("/orders/?...",
 * set by the server: executive.py's drill()) opens it on a click. A static file, since the
 * Content-Security-Policy allows no inline script. Loaded after observatory.js, which draws
 * the figures on DOMContentLoaded before this runs. */
(function () {
  "use strict";

  function target(point) {
    var data = point && point.customdata;
    var last = Array.isArray(data) ? data[data.length - 1] : data;
    return typeof last === "string" && last.charAt(0) === "/" && last.charAt(1) !== "/" ? last : "";
  }

  function follow(event) {
    var points = (event && event.points) || [];
    for (var i = 0; i < points.length; i++) {
      var url = target(points[i]);
      if (url) {
        window.location.assign(url);
        return;
      }
    }
  }

  function wire(root) {
    root.querySelectorAll("[data-figure]").forEach(function (div) {
      if (typeof div.on === "function" && !div.dataset.drill) {
        div.on("plotly_click", follow);
        div.dataset.drill = "1";
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    wire(document);
  });
})();
