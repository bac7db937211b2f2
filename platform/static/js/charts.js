// Tessera's Chart.js charts. The server renders every number into json_script elements;
// this file only draws them:
//   - the run page's training curve (loss, validation metric and epsilon per epoch, for the
//     model and its non-private twin), redrawn each time htmx swaps in a fresh progress
//     section (every 2 s while the run trains);
//   - the problem page's privacy–fairness–utility chart: one point per run (x: epsilon,
//     y: largest disparity, size and colour: utility), non-private runs apart at "∞".
// Each canvas gets data-points (how many points it draws) once drawn.
(function () {
  "use strict";
  if (typeof window.Chart === "undefined") { return; }
  var Chart = window.Chart;
  var css = window.getComputedStyle(document.documentElement);
  function cssColor(name, fallback) { return (css.getPropertyValue(name) || "").trim() || fallback; }
  var INK = cssColor("--ink", "#1d2330");
  var MUTED = cssColor("--muted", "#5a6272");
  var COLORS = {
    loss: cssColor("--series-0", "#1f5fbf"),
    val_metric: cssColor("--series-1", "#c2571a"),
    epsilon: "#2e7d4f",
  };
  var reduceMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  Chart.defaults.color = INK;
  Chart.defaults.font.family = window.getComputedStyle(document.body).fontFamily;
  Chart.defaults.animation = reduceMotion ? false : { duration: 250 };
  Chart.defaults.maintainAspectRatio = false;

  function readJSON(id) {
    var element = document.getElementById(id);
    if (!element) { return null; }
    try { return JSON.parse(element.textContent); } catch (error) { return null; }
  }
  function fmt(value, digits) {
    return (value === null || value === undefined) ? "n/a" : Number(value).toFixed(digits);
  }
  // The canvas' box gets its height once a chart is drawn in it (without JavaScript the
  // page shows the table, or the server's SVG, and no empty box).
  function prepare(canvas) { canvas.parentElement.classList.add("drawn"); }
  function countPoints(chart) {
    return chart.data.datasets.reduce(function (n, dataset) { return n + dataset.data.length; }, 0);
  }

  // --- training curve ------------------------------------------------------------------
  var SERIES = [
    { key: "loss", label: "loss", axis: "y" },
    { key: "val_metric", label: "validation metric", axis: "y" },
    { key: "epsilon", label: "ε spent", axis: "y2" },
  ];

  function curveDatasets(curve) {
    var datasets = [];
    (curve && curve.series || []).forEach(function (series, index) {
      var twin = index > 0;
      SERIES.forEach(function (spec) {
        var data = [];
        series.epochs.forEach(function (epoch, i) {
          var value = series[spec.key][i];
          if (value !== null && value !== undefined) { data.push({ x: epoch, y: value }); }
        });
        if (!data.length) { return; }
        datasets.push({
          label: spec.label + " (" + series.label + ")",
          data: data, yAxisID: spec.axis,
          borderColor: COLORS[spec.key], backgroundColor: COLORS[spec.key],
          borderDash: twin ? [6, 4] : [], pointStyle: twin ? "triangle" : "circle",
          pointRadius: 3, borderWidth: 2, tension: 0,
        });
      });
    });
    return datasets;
  }

  function drawCurve(canvas) {
    var curve = readJSON(canvas.dataset.curveSource);
    var datasets = curveDatasets(curve);
    var empty = document.getElementById(canvas.id + "-empty");
    if (empty) { empty.hidden = datasets.length > 0; }
    var hasEpsilon = datasets.some(function (d) { return d.yAxisID === "y2"; });
    var chart = Chart.getChart(canvas);
    if (chart) {
      chart.data.datasets = datasets;
      chart.options.scales.y2.display = hasEpsilon;
      chart.update();
    } else {
      prepare(canvas);
      chart = new Chart(canvas, {
        type: "line",
        data: { datasets: datasets },
        options: {
          parsing: false,
          interaction: { mode: "nearest", intersect: false },
          scales: {
            x: { type: "linear", title: { display: true, text: "epoch" },
                 ticks: { precision: 0, stepSize: 1 } },
            y: { title: { display: true, text: "loss · validation metric" } },
            y2: { position: "right", display: hasEpsilon, beginAtZero: true,
                  title: { display: true, text: "ε spent" }, grid: { drawOnChartArea: false } },
          },
          plugins: { legend: { position: "bottom" } },
        },
      });
    }
    canvas.dataset.points = String(countPoints(chart));
  }

  // --- privacy–fairness–utility ----------------------------------------------------------
  // Worst utility (share 0) light, best (share 1) dark: colour adds to size, never alone.
  function utilityColor(share, alpha) {
    var light = [158, 202, 225], dark = [8, 48, 107];
    var mix = light.map(function (c, i) { return Math.round(c + (dark[i] - c) * share); });
    return "rgba(" + mix.join(",") + "," + alpha + ")";
  }

  // A dashed rule between the finite epsilons and the "∞" column, labelled.
  var infinityRule = {
    id: "tesseraInfinityRule",
    afterDraw: function (chart, args, options) {
      if (!options || options.at === undefined) { return; }
      var x = chart.scales.x.getPixelForValue(options.at);
      var area = chart.chartArea, ctx = chart.ctx;
      ctx.save();
      ctx.strokeStyle = MUTED; ctx.setLineDash([4, 4]); ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(x, area.top); ctx.lineTo(x, area.bottom); ctx.stroke();
      ctx.setLineDash([]); ctx.fillStyle = MUTED; ctx.textAlign = "center";
      ctx.fillText(options.label, (x + area.right) / 2, area.top + 12);
      ctx.restore();
    },
  };

  function drawTradeoff(canvas) {
    var data = readJSON(canvas.dataset.tradeoffSource);
    if (!data) { return; }
    var inf = data.infinity_x;
    function toPoint(p) {
      return { x: p.private ? p.epsilon : inf, y: p.disparity, r: p.radius, p: p };
    }
    var drawn = data.points.filter(function (p) { return p.disparity !== null; });
    var dataset = function (label, points, style) {
      return {
        label: label, data: points.map(toPoint), pointStyle: style,
        backgroundColor: function (ctx) { return ctx.raw ? utilityColor(ctx.raw.p.share, 0.75) : "#999"; },
        borderColor: function (ctx) { return ctx.raw ? utilityColor(ctx.raw.p.share, 1) : "#666"; },
        borderWidth: 1.5, hoverBorderWidth: 3,
      };
    };
    var separator = inf - (inf - Math.max.apply(null, [0].concat(drawn.filter(function (p) {
      return p.private; }).map(function (p) { return p.epsilon; })))) / 2;
    prepare(canvas);
    new Chart(canvas, {
      type: "bubble",
      data: { datasets: [
        dataset("private runs (ε spent)", drawn.filter(function (p) { return p.private; }), "circle"),
        dataset("without differential privacy (ε = ∞)", drawn.filter(function (p) { return !p.private; }), "rectRot"),
      ] },
      options: {
        // Parsed (not parsing: false): the bubble controller reads each point's r from it.
        layout: { padding: { right: 12, top: 8 } },
        scales: {
          x: {
            type: "linear", min: 0, max: inf * 1.08,
            title: { display: true, text: "ε spent (privacy budget; less is more private)" },
            afterBuildTicks: function (axis) {
              axis.ticks = axis.ticks.filter(function (t) { return t.value < separator; });
              axis.ticks.push({ value: inf });
            },
            ticks: { callback: function (value) { return value === inf ? "∞" : Number(value).toFixed(1); } },
          },
          y: { beginAtZero: true, grace: "15%",
               title: { display: true, text: "largest disparity between groups (lower is fairer)" } },
        },
        plugins: {
          legend: { position: "bottom" },
          tesseraInfinityRule: { at: separator, label: "no privacy" },
          tooltip: { callbacks: { label: function (item) {
            var p = item.raw.p;
            return ["Run " + p.run + (p.model ? " · model " + p.model + " (" + p.status + ")" : ""),
                    // Two decimals: every page's epsilon precision (audits.figures).
                    "ε " + (p.private ? fmt(p.epsilon, 2) : "∞ (no differential privacy)"),
                    "largest disparity " + fmt(p.disparity, 3) + " (" + p.where + ")",
                    data.metric_label + " " + fmt(p.utility, 3)];
          } } },
        },
        onClick: function (event, elements, chart) {
          if (!elements.length) { return; }
          var element = elements[0];
          window.location.href = chart.data.datasets[element.datasetIndex].data[element.index].p.url;
        },
        onHover: function (event, elements) {
          event.native.target.style.cursor = elements.length ? "pointer" : "default";
        },
      },
      plugins: [infinityRule],
    });
    canvas.dataset.points = String(drawn.length);
  }

  function drawAll(root) {
    (root || document).querySelectorAll("canvas[data-curve-source]").forEach(drawCurve);
    (root || document).querySelectorAll("canvas[data-tradeoff-source]").forEach(drawTradeoff);
  }
  drawAll(document);
  // The run page's progress section carries the curve's data; htmx swaps it in every 2 s.
  document.body.addEventListener("htmx:afterSettle", function () {
    document.querySelectorAll("canvas[data-curve-source]").forEach(drawCurve);
  });
})();
