// Labeling dashboard charts (uPlot, vendored).
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("chart-data").textContent);
  const width = (el) => Math.max(320, el.clientWidth - 8);
  const bars = window.uPlot.paths.bars({ size: [0.6, 60] });

  const hoursEl = document.getElementById("chart-hours");
  if (data.hours.length) {
    new window.uPlot({
      width: width(hoursEl), height: 220,
      series: [{}, { label: "labels", stroke: "#2952cc", fill: "#2952cc33", paths: bars, points: { show: false } }],
      // The server pads the series with an empty hour on each side (selectors.hourly_series).
      scales: { x: { time: true } },
    }, [data.hours, data.per_hour], hoursEl);
  } else { hoursEl.textContent = "No labels yet."; }

  const annEl = document.getElementById("chart-annotators");
  if (data.annotators.length) {
    const xs = data.annotators.map((_, i) => i);
    const pct = (v) => (v === null ? null : Math.round(v * 1000) / 10);
    new window.uPlot({
      width: width(annEl), height: 240,
      scales: { x: { time: false, range: [-0.5, xs.length - 0.5] }, pct: { range: [0, 100] } },
      axes: [
        { values: (u, ticks) => ticks.map((t) => data.annotators[t] ?? ""), splits: () => xs },
        { label: "done" },
        { scale: "pct", side: 1, label: "%", grid: { show: false } },
      ],
      series: [
        {},
        { label: "done", stroke: "#2952cc", fill: "#2952cc55", paths: bars, points: { show: false } },
        { label: "agrees with majority %", scale: "pct", stroke: "#137333", width: 2, points: { size: 8 } },
        { label: "gold accuracy %", scale: "pct", stroke: "#b42318", width: 2, points: { size: 8 } },
      ],
    }, [xs, data.done, data.majority.map(pct), data.gold.map(pct)], annEl);
  } else { annEl.textContent = "No labels yet."; }
})();
