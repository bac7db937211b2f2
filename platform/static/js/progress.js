// Live progress for a training run: polls the run's progress JSON every 1.5 s, updates the
// page in place, and reloads once the run reaches a terminal state (to show the results).
(function () {
  "use strict";
  var section = document.getElementById("run-progress");
  if (!section || section.dataset.terminal === "true") { return; }
  var url = section.dataset.progressUrl;
  var INTERVAL_MS = 1500;

  function field(name) { return section.querySelector('[data-field="' + name + '"]'); }
  function setText(name, value) {
    var el = field(name);
    if (el) { el.textContent = value; }
  }
  function fmt(value, digits) {
    return (value === null || value === undefined) ? "–" : Number(value).toFixed(digits);
  }

  function render(data) {
    var status = field("status_label");
    if (status) {
      status.textContent = data.status_label;
      status.className = "status status-" + data.status;
    }
    setText("percent", data.percent);
    setText("stage", data.stage || "–");
    setText("epoch", data.epoch);
    setText("total_epochs", data.total_epochs);
    setText("loss", fmt(data.loss, 4));
    setText("val_metric", fmt(data.val_metric, 4));
    setText("epsilon_spent", fmt(data.epsilon_spent, 3));
    var fill = field("fill");
    if (fill) { fill.style.width = data.percent + "%"; }
    var bar = field("bar");
    if (bar) { bar.setAttribute("aria-valuenow", data.percent); }
    // The SVG is rendered and escaped by the server's chart module.
    var curve = field("curve");
    if (curve && data.curve_svg) { curve.innerHTML = data.curve_svg; }
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        render(data);
        if (data.terminal) { window.location.reload(); return; }
        window.setTimeout(poll, INTERVAL_MS);
      })
      .catch(function () { window.setTimeout(poll, INTERVAL_MS * 4); });
  }
  window.setTimeout(poll, INTERVAL_MS);
})();
