// Keyboard-first labeling: pairwise keys, ranking by drag and by number keys (a number
// moves the answer to that place; "=" or "t" ties it with the one above), and on a single
// answer "g"/"b" for good/bad with digits for its score.
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

  // The visual order is the ranking. An item is tied with the one above only when the
  // annotator said so (the "tie with above" button or "="): ranks never tie by accident.
  function syncRanks() {
    let rank = 0;
    items().forEach((li, i) => {
      if (i === 0) li.dataset.tied = "";
      if (!li.dataset.tied) rank += 1;
      li.querySelector("select[name^=rank_]").value = String(rank);
      const badge = li.querySelector(".tie-badge");
      if (badge) badge.hidden = !li.dataset.tied;
      const button = li.querySelector("[data-tie]");
      if (button) button.setAttribute("aria-pressed", li.dataset.tied ? "true" : "false");
    });
    checkScores();
  }

  // Give ``li`` the position ``position`` (1-based): the others shift to make room. Moving
  // an item out of, or into the middle of, a tie group never creates a tie.
  function moveTo(li, position) {
    const list = document.getElementById("ranking");
    const before = items();
    const follower = before[before.indexOf(li) + 1];
    if (follower && !li.dataset.tied) follower.dataset.tied = "";
    li.dataset.tied = "";
    const rest = before.filter((x) => x !== li);
    const index = Math.max(0, Math.min(rest.length, position - 1));
    list.insertBefore(li, rest[index] || null);
    if (rest[index]) rest[index].dataset.tied = "";
    syncRanks();
  }

  function toggleTie(li) {
    if (items().indexOf(li) <= 0) return;
    li.dataset.tied = li.dataset.tied ? "" : "1";
    syncRanks();
  }

  // Scores must agree with the ranking: a better-ranked answer can't score lower.
  function scoreOf(letter) {
    const select = document.querySelector(`#task select[name="score_${letter}"]`);
    return select && select.value ? Number(select.value) : null;
  }

  function contradiction(groups) {
    for (let i = 0; i < groups.length; i++) {
      for (let j = i + 1; j < groups.length; j++) {
        for (const a of groups[i]) {
          for (const b of groups[j]) {
            const sa = scoreOf(a), sb = scoreOf(b);
            if (sa !== null && sb !== null && sa < sb) {
              return `${a} is ranked above ${b} but scored lower (${sa} < ${sb}): make the scores agree with the ranking.`;
            }
          }
        }
      }
    }
    return "";
  }

  function rankingGroups() {
    const groups = [];
    items().forEach((li) => {
      if (li.dataset.tied && groups.length) groups[groups.length - 1].push(li.dataset.letter);
      else groups.push([li.dataset.letter]);
    });
    return groups;
  }

  function showWarning(message) {
    const box = document.getElementById("score-warning");
    if (!box) return;
    box.textContent = message;
    box.hidden = !message;
  }

  function checkScores() {
    if (!document.getElementById("ranking")) return "";
    const message = contradiction(rankingGroups());
    showWarning(message);
    const submit = document.querySelector('#task [data-key="submit"]');
    if (submit) submit.disabled = Boolean(message);
    return message;
  }

  function initRanking() {
    const list = document.getElementById("ranking");
    if (!list || list.dataset.sortable) return;
    list.dataset.sortable = "1";
    if (window.Sortable) {
      // forceFallback: mouse-event dragging, the same in every browser and in automation.
      window.Sortable.create(list, {
        animation: 120,
        forceFallback: true,
        onEnd: (event) => { moveTo(event.item, items().indexOf(event.item) + 1); },
      });
    }
    list.addEventListener("change", (event) => {
      if (event.target.matches("select[name^=rank_]")) {
        const li = event.target.closest("li");
        moveTo(li, Number(event.target.value));
        li.focus();
      } else if (event.target.matches("select[name^=score_]")) {
        checkScores();
      }
    });
    list.addEventListener("click", (event) => {
      const button = event.target.closest("[data-tie]");
      if (button) toggleTie(button.closest("li"));
    });
    syncRanks();
  }

  // Pairwise: a choice that contradicts the scores is stopped before it is sent.
  document.addEventListener("click", (event) => {
    const button = event.target.closest('#task [data-mode="pairwise"] button[name=choice], #task button[name=choice]');
    if (!button || document.getElementById("ranking")) return;
    const letters = Array.from(document.querySelectorAll("#task .candidate")).map((c) => c.dataset.letter);
    const order = { a: [[letters[0]], [letters[1]]], b: [[letters[1]], [letters[0]]] }[button.value];
    const message = order ? contradiction(order) : "";
    showWarning(message);
    if (message) { event.preventDefault(); event.stopPropagation(); }
  }, true);

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
    } else if (mode === "single") {
      const score = document.querySelector('#task select[name^="score_"]');
      if (key === "g") handled = click("good");
      else if (key === "b") handled = click("bad");
      else if (score && /^[0-7]$/.test(key)) {
        score.value = key === "0" ? "" : key;
        handled = true;
      }
    } else {
      const focused = document.activeElement && document.activeElement.closest("#ranking > li");
      const all = items();
      if (/^[1-9]$/.test(key) && focused && Number(key) <= all.length) {
        moveTo(focused, Number(key));
        focused.focus();
        handled = true;
      } else if ((key === "=" || key === "t") && focused) {
        toggleTie(focused);
        handled = true;
      } else if (key === "j" || key === "k") {
        const index = focused ? all.indexOf(focused) : -1;
        const next = key === "j" ? Math.min(all.length - 1, index + 1) : Math.max(0, index - 1);
        if (all[next]) { all[next].focus(); handled = true; }
      } else if (key === "Enter") {
        handled = !checkScores() && click("submit");
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
