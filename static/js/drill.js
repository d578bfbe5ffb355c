/* Drill-down from a chart: a point whose customdata ends with a local address ("/orders/?...",
 * set by the server: executive.py's drill()) opens it on a click. A static file, since the
 * Content-Security-Policy allows no inline script. Loaded after observatory.js, which draws
 * the figures in view on DOMContentLoaded and the others later, each announced by an
 * ``observatory:drawn`` event. */
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

  function wireOne(div) {
    if (typeof div.on === "function" && !div.dataset.drill) {
      div.on("plotly_click", follow);
      div.dataset.drill = "1";
    }
  }

  function wire(root) {
    root.querySelectorAll("[data-figure]").forEach(wireOne);
  }

  document.addEventListener("DOMContentLoaded", function () {
    wire(document);
  });
  // figures off screen are drawn after the load event or when scrolled to
  // (observatory.js): wire each as it is drawn
  document.addEventListener("observatory:drawn", function (event) {
    wireOne(event.target);
  });
})();
