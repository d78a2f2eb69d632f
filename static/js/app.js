// Preflab's shared script: htmx settings and site-wide htmx behaviour.
// Page-specific behaviour lives in its own file beside its template (labeling.js, dashboard.js).
(function () {
  "use strict";
  if (!window.htmx) return;

  // Partials swap inside their target; keep the scroll position for in-place updates
  // (progress polling, the next labeling task).
  htmx.config.defaultSwapStyle = "innerHTML";
  htmx.config.scrollIntoViewOnBoost = false;

  // An expired session turns an htmx request into a redirect to the login page, whose HTML
  // would otherwise be swapped into a fragment: go to the login page as a whole instead.
  document.addEventListener("htmx:beforeSwap", (event) => {
    const url = new URL(event.detail.xhr.responseURL || window.location.href);
    if (url.pathname === "/login/" && window.location.pathname !== "/login/") {
      event.detail.shouldSwap = false;
      url.searchParams.set("next", window.location.pathname + window.location.search);
      window.location.assign(url.toString());
    }
  });

  // Failed requests are not swapped by default; say so rather than fail silently.
  function notify(text) {
    const main = document.getElementById("main");
    if (!main) return;
    let box = document.getElementById("htmx-error");
    if (!box) {
      box = document.createElement("div");
      box.id = "htmx-error";
      box.className = "alert alert-error";
      box.setAttribute("role", "alert");
      main.prepend(box);
    }
    box.textContent = text;
  }
  document.addEventListener("htmx:responseError", (event) => {
    const xhr = event.detail.xhr;
    const detail = xhr.status === 403 ? "You are not allowed to do that."
      : xhr.status === 404 ? "That item no longer exists."
      : `The server answered ${xhr.status}.`;
    notify(`${detail} Reload the page to see its current state.`);
  });
  document.addEventListener("htmx:sendError", () => {
    notify("The server could not be reached. Check your connection and try again.");
  });
  document.addEventListener("htmx:afterRequest", (event) => {
    const box = document.getElementById("htmx-error");
    if (box && event.detail.successful) box.remove();
  });

  // A form field marked data-shown-with="<checkbox name>" shows only while that box is
  // ticked (LoRA's rank and alpha while "use LoRA" is off mean nothing). The server still
  // validates it; hiding is only presentation.
  function syncShownWith(root) {
    root.querySelectorAll("[data-shown-with]").forEach((input) => {
      const form = input.form;
      const box = form && form.querySelector(`input[type=checkbox][name="${input.dataset.shownWith}"]`);
      const field = input.closest(".field");
      if (box && field) field.hidden = !box.checked;
    });
  }
  document.addEventListener("change", (event) => {
    if (event.target.matches && event.target.matches("input[type=checkbox]") && event.target.form) {
      syncShownWith(event.target.form);
    }
  });
  // On swap (not only on settle), so swapped-in fields never show in the wrong state.
  document.addEventListener("htmx:afterSwap", () => syncShownWith(document));
  document.addEventListener("htmx:afterSettle", () => syncShownWith(document));
  syncShownWith(document);

  // The run form's base model (data-recommended-settings) asks the server for the settings
  // only when the choice changes them: the new model recommends some for the kind shown, or
  // the settings shown are the last model's recommendations. Otherwise nothing is swapped,
  // so what was typed meanwhile cannot be overwritten by a late answer.
  document.addEventListener("htmx:beforeRequest", (event) => {
    const select = event.detail.elt;
    if (!select.matches || !select.matches("select[data-recommended-settings]")) return;
    const fields = document.getElementById("kind-fields");
    const option = select.selectedOptions[0];
    const kinds = ((option && option.dataset.recommends) || "").split(" ");
    const shown = document.getElementById("recommended-note");
    if (!shown && !(fields && kinds.includes(fields.dataset.kind))) event.preventDefault();
  });

  // Escape leaves a text box, so the page's keyboard shortcuts work again instead of
  // typing into it (the comment or ideal response on the labeling page).
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (event.key !== "Escape" || !target || !target.matches) return;
    if (target.matches("textarea, input:not([type=checkbox]):not([type=radio]), select, [contenteditable]")) {
      target.blur();
      const main = document.getElementById("main");
      if (main) main.focus({ preventScroll: true });
    }
  });
})();
