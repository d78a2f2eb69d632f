// Training run charts (uPlot, vendored): live curves on a run's page, overlays on the compare page.
// Every name shown comes from the server as data and is written with textContent, never as HTML.
(function () {
  "use strict";
  const PALETTE = ["#2952cc", "#b42318", "#137333", "#b54708", "#6941c6", "#0e7490", "#c11574", "#475467"];
  const POLL_MS = 2000;
  const width = (el) => Math.max(320, el.clientWidth - 8);

  // "loss" has a chart of its own; "rewards/chosen" and "rewards/margins" share "rewards";
  // a name without a slash ("kl", "entropy") is a family of one.
  function family(name) {
    const slash = name.indexOf("/");
    return slash > 0 ? name.slice(0, slash) : name;
  }

  // Tick labels with as many decimals as the tick spacing needs (a loss moving in the fourth
  // decimal, a learning rate of 1e-5), integers on the step axis.
  function yTicks(u, splits) {
    if (splits.length < 2) return splits.map((v) => (v === null ? "" : String(v)));
    const step = Math.abs(splits[1] - splits[0]) || 1;
    const big = Math.max(...splits.map((v) => Math.abs(v)));
    if (big !== 0 && (big < 1e-3 || big >= 1e6)) {
      const digits = Math.max(0, Math.min(4, Math.ceil(Math.log10(big / step))));
      return splits.map((v) => (v === 0 ? "0" : v.toExponential(digits)));
    }
    const decimals = Math.max(0, Math.min(8, -Math.floor(Math.log10(step))));
    return splits.map((v) => v.toFixed(decimals));
  }
  // uPlot spreads a flat series (a clip fraction that stays 0) over 0..100; keep the axis
  // near the value instead, and pad a varying one by 10% as uPlot would.
  function yRange(u, min, max) {
    if (min === null || max === null) return [0, 1];
    if (min === max) {
      const pad = Math.abs(min) * 0.1 || 1;
      return [min - pad, max + pad];
    }
    return window.uPlot.rangeNum(min, max, 0.1, true);
  }
  const STEP_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000];

  function chartOptions(el, labels) {
    return {
      width: width(el),
      height: 220,
      scales: { x: { time: false }, y: { range: yRange } },
      axes: [
        { label: "step", incrs: STEP_INCRS, values: (u, splits) => splits.map((v) => String(Math.round(v))) },
        { size: 72, values: yTicks },
      ],
      series: [{ label: "step" }].concat(labels.map((label, i) => ({
        label: label,
        stroke: PALETTE[i % PALETTE.length],
        width: 2,
        spanGaps: true,
        points: { size: 5 },
      }))),
    };
  }

  // Charts take their container's width when built; keep them fitting as cards are added
  // to the grid and when the window changes size.
  const plots = new Set();
  function fitAll() {
    for (const plot of plots) {
      const el = plot.root.parentNode;
      if (el) plot.setSize({ width: width(el), height: 220 });
    }
  }
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(fitAll, 150);
  });
  function plot(el, labels, data) {
    const made = new window.uPlot(chartOptions(el, labels), data, el);
    plots.add(made);
    return made;
  }

  function chartCard(container, id, title) {
    const card = document.createElement("section");
    card.className = "card";
    const heading = document.createElement("h3");
    heading.textContent = title;
    const el = document.createElement("div");
    el.className = "chart";
    el.id = id;
    el.dataset.family = title;
    card.append(heading, el);
    container.append(card);
    return el;
  }

  // --- one run: live curves --------------------------------------------------------------
  function runPage(dataEl) {
    const curves = JSON.parse(dataEl.textContent);
    const url = document.getElementById("run-metrics-url").dataset.url;
    const container = document.getElementById("run-charts");
    const charts = new Map(); // family -> {plot, names}
    let slot = 0;

    function families() {
      const groups = new Map();
      // The loss first, then what shows reward hacking (score, KL, length, scores beyond
      // the reference answers'), then the rest.
      const first = ["loss", "score", "kl", "response_length", "beyond_reference"];
      const rank = (name) => {
        const i = first.indexOf(family(name));
        return i < 0 ? first.length : i;
      };
      const names = Object.keys(curves.metrics).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
      for (const name of names) {
        if (!curves.metrics[name].some((v) => v !== null)) continue;
        const key = family(name);
        if (!groups.has(key)) groups.set(key, []);
        groups.get(key).push(name);
      }
      return groups;
    }

    function draw() {
      if (!curves.steps.length) return;
      const empty = document.getElementById("charts-empty");
      if (empty) empty.remove();
      // Lay out every card first, so each chart is sized for its final place in the grid.
      const pending = [];
      for (const [key, names] of families()) {
        const data = [curves.steps.slice()].concat(names.map((n) => curves.metrics[n].slice()));
        const known = charts.get(key);
        if (known && known.names.join("\n") === names.join("\n")) {
          known.plot.setData(data);
          continue;
        }
        let el;
        if (known) {
          el = known.plot.root.parentNode;
          plots.delete(known.plot);
          known.plot.destroy();
        } else {
          el = chartCard(container, key === "loss" ? "chart-loss" : `chart-${slot++}`, key);
        }
        pending.push([key, el, names, data]);
      }
      if (!pending.length) return;
      fitAll();
      for (const [key, el, names, data] of pending) {
        charts.set(key, { plot: plot(el, names, data), names: names });
      }
    }

    function merge(update) {
      const fresh = update.steps.map((step, i) => [step, i]).filter(([step]) => !curves.steps.length || step > curves.steps[curves.steps.length - 1]);
      if (!fresh.length) return false;
      const before = curves.steps.length;
      for (const [step] of fresh) curves.steps.push(step);
      const names = new Set(Object.keys(curves.metrics).concat(Object.keys(update.metrics)));
      for (const name of names) {
        const values = curves.metrics[name] || new Array(before).fill(null);
        const incoming = update.metrics[name];
        for (const [, i] of fresh) values.push(incoming ? incoming[i] : null);
        curves.metrics[name] = values;
      }
      return true;
    }

    function poll() {
      const last = curves.steps.length ? curves.steps[curves.steps.length - 1] : -1;
      fetch(`${url}?after=${last}`, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
        .then((update) => {
          if (merge(update)) draw();
          curves.active = update.active;
          if (update.active) window.setTimeout(poll, POLL_MS);
        })
        .catch(() => window.setTimeout(poll, POLL_MS * 5));
    }

    draw();
    if (curves.active) window.setTimeout(poll, POLL_MS);
    // A cancelled or failed run that is resumed is active again: its status fragment
    // (swapped in by htmx) says so, and the curves poll again from their last step.
    document.body.addEventListener("htmx:afterSettle", () => {
      const status = document.getElementById("run-status");
      if (!curves.active && status && status.dataset.active === "true") {
        curves.active = true;
        window.setTimeout(poll, POLL_MS);
      }
    });
  }

  // --- compare: one chart per shared metric, a series per run -----------------------------
  function comparePage(dataEl) {
    const data = JSON.parse(dataEl.textContent);
    data.charts.forEach((chart, i) => {
      const el = document.querySelector(`[data-chart="${i}"]`);
      if (!el) return;
      const labels = chart.series.map((s) => s.label);
      plot(el, labels, [chart.steps].concat(chart.series.map((s) => s.values)));
    });
  }

  const runData = document.getElementById("run-curves");
  if (runData) runPage(runData);
  const compareData = document.getElementById("compare-data");
  if (compareData) comparePage(compareData);
})();
