// Bar charts (monitor/templates/monitor/_macros.html): the exact value of a bar
// shows in a tooltip on hover and on keyboard focus (each bar is focusable and
// carries the same text as its aria-label). One tooltip element for the page;
// event delegation, so charts htmx swaps in work too.
(function () {
  "use strict";

  let tooltip = null;
  let shownFor = null;

  function tooltipElement() {
    if (!tooltip) {
      tooltip = document.createElement("div");
      tooltip.className = "chart-tooltip";
      tooltip.setAttribute("aria-hidden", "true"); // screen readers read the bar's aria-label
      tooltip.hidden = true;
      document.body.appendChild(tooltip);
    }
    return tooltip;
  }

  function show(bar) {
    const element = tooltipElement();
    if (shownFor) shownFor.classList.remove("active");
    shownFor = bar;
    bar.classList.add("active");
    element.textContent = bar.dataset.tooltip;
    element.hidden = false;
    const box = bar.querySelector("rect").getBoundingClientRect();
    const width = element.offsetWidth;
    const left = Math.min(Math.max(box.left + box.width / 2 - width / 2, 4),
      document.documentElement.clientWidth - width - 4);
    // Above the bar, or below its top when there is no room above.
    const top = box.top - element.offsetHeight - 8 > 0 ? box.top - element.offsetHeight - 8 : box.top + 8;
    element.style.left = window.scrollX + left + "px";
    element.style.top = window.scrollY + top + "px";
  }

  function hide(bar) {
    if (!tooltip || (bar && bar !== shownFor)) return;
    if (shownFor) shownFor.classList.remove("active");
    shownFor = null;
    tooltip.hidden = true;
  }

  function barOf(event) {
    return event.target instanceof Element ? event.target.closest("svg.chart .bar[data-tooltip]") : null;
  }

  document.addEventListener("pointerover", (event) => { const bar = barOf(event); if (bar) show(bar); });
  document.addEventListener("pointerout", (event) => {
    const bar = barOf(event);
    if (bar && !bar.contains(event.relatedTarget)) hide(bar);
  });
  document.addEventListener("focusin", (event) => { const bar = barOf(event); if (bar) show(bar); });
  document.addEventListener("focusout", (event) => { const bar = barOf(event); if (bar) hide(bar); });
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") hide(null); });
  // A swapped chart takes its bars with it.
  document.addEventListener("htmx:beforeSwap", () => hide(null));
})();
