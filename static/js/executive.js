/* The executive overview on paper: before printing, every chart is redrawn to the width
 * its card has on the page (one chart per row, see kpis.css), keeping its height; after
 * printing, to the width it has on screen again. */
(function () {
  "use strict";

  function fit() {
    if (typeof window.Plotly === "undefined") {
      return;
    }
    if (window.Observatory) {
      window.Observatory.drawWaiting(); // the charts not drawn yet (observatory.js)
    }
    document.querySelectorAll(".js-plotly-plot").forEach(function (el) {
      var width = el.parentElement ? el.parentElement.clientWidth : 0;
      if (width > 0) {
        window.Plotly.relayout(el, { width: width });
      }
    });
  }

  // the Print button (no inline handler: the Content-Security-Policy allows no inline script)
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-action=print]") : null;
    if (button) {
      window.print();
    }
  });

  window.addEventListener("beforeprint", fit);
  window.addEventListener("afterprint", fit);
  if (window.matchMedia) {
    var print = window.matchMedia("print");
    if (print.addEventListener) {
      print.addEventListener("change", fit);
    }
  }
})();
