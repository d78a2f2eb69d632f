// An evaluation's leaderboard chart (uPlot, vendored): each model's Bradley-Terry rating as a
// point with its 95% bootstrap interval as a whisker, best first. Model names come from the
// server as JSON data and reach the page only as axis text drawn on the canvas.
(function () {
  "use strict";
  const dataEl = document.getElementById("leaderboard-data");
  const el = document.getElementById("leaderboard-chart");
  if (!dataEl || !el || !window.uPlot) return;
  const chart = JSON.parse(dataEl.textContent);
  if (!chart.labels.length) return;
  const ACCENT = "#2952cc";
  const width = () => Math.max(320, el.clientWidth - 8);
  const xs = chart.labels.map((_, i) => i);
  const short = (label) => (label.length > 24 ? `${label.slice(0, 23)}…` : label);

  // The whiskers: a vertical line from low to high with caps, drawn over the points.
  function drawWhiskers(u) {
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = ACCENT;
    ctx.lineWidth = 2 * uPlot.pxRatio;
    const cap = 6 * uPlot.pxRatio;
    xs.forEach((x, i) => {
      const cx = u.valToPos(x, "x", true);
      const top = u.valToPos(chart.high[i], "y", true);
      const bottom = u.valToPos(chart.low[i], "y", true);
      ctx.beginPath();
      ctx.moveTo(cx, top);
      ctx.lineTo(cx, bottom);
      ctx.moveTo(cx - cap, top);
      ctx.lineTo(cx + cap, top);
      ctx.moveTo(cx - cap, bottom);
      ctx.lineTo(cx + cap, bottom);
      ctx.stroke();
    });
    ctx.restore();
  }

  function yRange(u, min, max) {
    const low = Math.min(...chart.low, min);
    const high = Math.max(...chart.high, max);
    const pad = Math.max(10, (high - low) * 0.1);
    return [low - pad, high + pad];
  }

  const options = {
    width: width(),
    height: 260,
    legend: { show: false },
    cursor: { show: false },
    scales: { x: { time: false, range: [-0.5, xs.length - 0.5] }, y: { range: yRange } },
    axes: [
      { splits: () => xs, values: (u, splits) => splits.map((v) => short(chart.labels[v] || "")), grid: { show: false } },
      { label: "rating (Elo scale)", size: 64 },
    ],
    series: [
      {},
      { label: "rating", stroke: ACCENT, fill: ACCENT, paths: () => null, points: { show: true, size: 10, fill: ACCENT } },
    ],
    hooks: { draw: [drawWhiskers] },
  };
  const plot = new window.uPlot(options, [xs, chart.ratings], el);
  window.addEventListener("resize", () => plot.setSize({ width: width(), height: 260 }));
})();
