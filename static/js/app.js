// Preflab's small shared script. Page-specific behaviour lives beside its template.
document.addEventListener("DOMContentLoaded", () => {
  if (window.htmx) {
    // Keep the scroll position when a partial swaps in place (progress bars, next task).
    htmx.config.defaultSwapStyle = "innerHTML";
    htmx.config.scrollIntoViewOnBoost = false;
  }
});
