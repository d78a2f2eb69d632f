// How answers read on the labeling page, remembered in this browser: side by side or
// stacked, formatted (Markdown) or raw text. Each button names a class it toggles on <body>.
// The buttons are hidden until this script runs, so without JavaScript nothing offers a
// choice that cannot work.
(function () {
  "use strict";
  document.querySelectorAll("[data-view-toggle]").forEach((button) => {
    const name = button.dataset.viewToggle;
    const key = `preflab.view.${name}`;
    function apply(on) {
      document.body.classList.toggle(name, on);
      button.setAttribute("aria-pressed", String(on));
      button.textContent = on ? button.dataset.on : button.dataset.off;
    }
    let on = false;
    try { on = window.localStorage.getItem(key) === "on"; } catch (e) { /* private mode */ }
    apply(on);
    button.hidden = false;
    button.addEventListener("click", () => {
      on = !on;
      apply(on);
      try { window.localStorage.setItem(key, on ? "on" : "off"); } catch (e) { /* ignore */ }
    });
  });
})();
