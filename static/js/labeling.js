// Keyboard-first labeling: pairwise keys, ranking by drag and by number keys.
(function () {
  "use strict";

  function typing(target) {
    return target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
  }

  function click(key) {
    const button = document.querySelector(`#task-area [data-key="${key}"]`);
    if (button) { button.click(); return true; }
    return false;
  }

  function items() { return Array.from(document.querySelectorAll("#ranking > li")); }

  // Reorder the list by the rank selects (ties keep their current relative order).
  function sortByRank() {
    const list = document.getElementById("ranking");
    if (!list) return;
    const sorted = items()
      .map((li, i) => ({ li, i, rank: Number(li.querySelector("select[name^=rank_]").value) }))
      .sort((a, b) => a.rank - b.rank || a.i - b.i);
    sorted.forEach(({ li }) => list.appendChild(li));
  }

  // After a drag, the visual order is the ranking: ranks become positions 1..k.
  function ranksFromOrder() {
    items().forEach((li, i) => { li.querySelector("select[name^=rank_]").value = String(i + 1); });
  }

  function initRanking() {
    const list = document.getElementById("ranking");
    if (!list || list.dataset.sortable) return;
    list.dataset.sortable = "1";
    if (window.Sortable) {
      // forceFallback: mouse-event dragging, the same in every browser and in automation.
      window.Sortable.create(list, { animation: 120, forceFallback: true, onEnd: ranksFromOrder });
    }
    list.addEventListener("change", (event) => {
      if (event.target.matches("select[name^=rank_]")) sortByRank();
    });
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    const task = document.getElementById("task");
    if (!task) return;
    const mode = task.dataset.mode;
    const key = event.key;
    let handled = false;
    if (key === "u") handled = click("undo");
    else if (key === "s") handled = click("skip");
    else if (mode === "pairwise") {
      if (key === "1" || key === "ArrowLeft") handled = click("a");
      else if (key === "2" || key === "ArrowRight") handled = click("b");
      else if (key === "t") handled = click("tie");
      else if (key === "b") handled = click("both_bad");
    } else {
      const focused = document.activeElement && document.activeElement.closest("#ranking > li");
      const all = items();
      if (/^[1-9]$/.test(key) && focused && Number(key) <= all.length) {
        focused.querySelector("select[name^=rank_]").value = key;
        sortByRank();
        focused.focus();
        handled = true;
      } else if (key === "j" || key === "k") {
        const index = focused ? all.indexOf(focused) : -1;
        const next = key === "j" ? Math.min(all.length - 1, index + 1) : Math.max(0, index - 1);
        if (all[next]) { all[next].focus(); handled = true; }
      } else if (key === "Enter") {
        handled = click("submit");
      }
    }
    if (handled) event.preventDefault();
  });

  // "Start from A": copy a response into the demonstration box to edit it.
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-start-from]");
    if (!button) return;
    const source = document.querySelector(
      `#task .candidate[data-letter="${button.dataset.startFrom}"] .raw-answer`);
    const box = document.getElementById("id_demonstration");
    // The answer's exact text, not its rendered Markdown.
    if (source && box) { box.value = source.textContent; box.focus(); }
  });

  document.addEventListener("DOMContentLoaded", initRanking);
  document.addEventListener("htmx:afterSwap", () => {
    initRanking();
    const first = document.querySelector("#ranking > li");
    if (first) first.focus();
  });
})();
