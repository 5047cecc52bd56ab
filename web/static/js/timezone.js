// The browser's IANA time zone, for the server to store at the first sign-in
// (hidden [data-detect-timezone] fields) and to offer on the Profile page
// ([data-browser-timezone] shows it; a [data-use-browser-timezone] button selects it).
(function () {
  "use strict";

  let zone = "";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (error) {
    zone = "";
  }

  function selectFor(button) {
    return document.getElementById(button.dataset.useBrowserTimezone);
  }

  function fill(root) {
    root.querySelectorAll("input[data-detect-timezone]").forEach((input) => { input.value = zone; });
    root.querySelectorAll("[data-browser-timezone]").forEach((element) => {
      element.textContent = zone || "unknown";
    });
    root.querySelectorAll("button[data-use-browser-timezone]").forEach((button) => {
      const select = selectFor(button);
      const known = select && [...select.options].some((option) => option.value === zone);
      button.hidden = !known || select.value === zone;
    });
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-use-browser-timezone]");
    if (!button) return;
    selectFor(button).value = zone;
    button.hidden = true;
  });
  // The Profile form swaps itself after saving: fill the new one too.
  document.addEventListener("htmx:afterSwap", (event) => fill(event.detail.elt.parentElement || document));
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => fill(document));
  else fill(document);
})();
