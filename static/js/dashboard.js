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

  // Agreement with the majority, per annotator per day (a line each; gaps where a day has
  // nothing to compare).
  const trendEl = document.getElementById("chart-trend");
  const trend = data.trend;
  if (trendEl && trend && trend.days.length && trend.rates.some((r) => r.some((v) => v !== null))) {
    const PALETTE = ["#2952cc", "#b42318", "#137333", "#b54708", "#6941c6", "#0e7490", "#c11574", "#475467"];
    const pct = (v) => (v === null ? null : Math.round(v * 1000) / 10);
    // The server pads the days with an empty one on each side (views._agreement_trend).
    new window.uPlot({
      width: width(trendEl), height: 220,
      scales: { x: { time: true }, y: { range: [0, 100] } },
      axes: [{}, { label: "agrees with majority %" }],
      series: [{}].concat(trend.annotators.map((name, i) => ({
        label: name, stroke: PALETTE[i % PALETTE.length], width: 2, points: { size: 7 }, spanGaps: false,
      }))),
    }, [trend.days].concat(trend.rates.map((r) => r.map(pct))), trendEl);
  } else if (trendEl) {
    trendEl.classList.remove("chart");  // no empty chart-sized gap for a sentence
    trendEl.className = "muted";
    trendEl.textContent = "Agreement over time shows once two annotators label the same tasks.";
  }
})();
