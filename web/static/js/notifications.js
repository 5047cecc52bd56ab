// Over-consumption alerts and early warnings in the browser: a toast for each live
// one, the unread badge in the navigation bar and the unread count in the tab's
// title ("(3) Dashboard · Energy Management"). The monitor API is the source of
// truth for the count; live alerts only bump it until the next fetch.
// browser_notifications.js shows the same texts as system notifications.
(function () {
  "use strict";

  const UNREAD_URL = "/api/monitor/alerts/unread-count";
  const DEVICE_PAGE = /^\/monitor\/devices\/[0-9a-f-]{36}$/;
  const TOAST_MILLISECONDS = 12000;
  const MAX_TOASTS = 4;

  // A redelivered alert (at-least-once delivery) must not be shown or counted twice.
  const seenAlertIds = new Set();
  let unread = 0;
  const UNREAD_PREFIX = /^\(\d+\+?\) /;

  function renderBadge() {
    const badge = document.getElementById("alert-badge");
    if (!badge) return;
    const count = unread > 99 ? "99+" : String(unread);
    badge.textContent = count;
    badge.hidden = unread === 0;
    badge.title = unread === 1 ? "1 unread alert" : unread + " unread alerts";
    badge.setAttribute("aria-label", badge.title);
    const title = document.title.replace(UNREAD_PREFIX, "");
    document.title = unread === 0 ? title : "(" + count + ") " + title;
  }

  // Ask the server how many alerts are unread (also those raised while this page was closed).
  async function refreshUnread(retried) {
    if (!document.getElementById("alert-badge")) return;
    try {
      const response = await fetch(UNREAD_URL, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (response.status === 401 && !retried && window.ems && await window.ems.refreshAccessToken()) {
        return refreshUnread(true);
      }
      if (!response.ok) return;
      const body = await response.json();
      if (Number.isInteger(body.unread) && body.unread >= 0) {
        unread = body.unread;
        renderBadge();
      }
    } catch (error) {
      // Offline: keep the badge as it is; the next reconnect asks again.
    }
  }

  function number(value) {
    return Number(value).toLocaleString(undefined, { maximumFractionDigits: 2 });
  }

  // The viewer's zone (their Profile's, which the page names); the browser's own without one.
  function viewerZone() {
    const zone = document.body && document.body.dataset.viewerTimezone;
    try {
      if (zone) new Intl.DateTimeFormat(undefined, { timeZone: zone });
      return zone || undefined;
    } catch (error) {
      return undefined;  // a zone this browser does not know
    }
  }

  function localTime(date) {
    return date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: viewerZone() });
  }

  // "Today 17:00–18:00" in the viewer's time zone (alerts carry UTC hours).
  function hourLabel(isoHour) {
    const start = new Date(isoHour);
    if (Number.isNaN(start.getTime())) return "";
    const end = new Date(start.getTime() + 3600 * 1000);
    const dayOf = (date) => date.toLocaleDateString(undefined, { day: "numeric", month: "short", timeZone: viewerZone() });
    const day = dayOf(start) === dayOf(new Date()) ? "Today" : dayOf(start);
    return day + " " + localTime(start) + "\u2013" + localTime(end);
  }

  // What an alert or a warning says, for its toast and its browser notification.
  function alertText(alert) {
    if (alert.kind === "warning") {
      const due = new Date(alert.due_at);
      const when = Number.isNaN(due.getTime()) ? "before the hour ends" : "at about " + localTime(due);
      return {
        title: "Heads up: " + alert.device_name,
        body: "At this rate, " + alert.device_name + " passes its " + number(alert.limit_kwh) +
          " kWh limit " + when + " (" + number(alert.kwh) + " kWh so far).",
      };
    }
    return {
      title: "Over limit: " + alert.device_name,
      body: hourLabel(alert.hour_start) + " \u00b7 " + number(alert.kwh) + " kWh (limit " + number(alert.limit_kwh) + " kWh)",
    };
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function dismiss(toast) {
    clearTimeout(toast.dismissTimer);
    toast.classList.add("leaving");
    setTimeout(() => toast.remove(), 200);
  }

  // Dismiss on a timer that stops while the reader hovers or focuses the toast.
  function scheduleDismiss(toast) {
    clearTimeout(toast.dismissTimer);
    toast.dismissTimer = setTimeout(() => dismiss(toast), TOAST_MILLISECONDS);
  }

  function alertToast(alert) {
    // A warning is styled apart (toast-warning) and is a status, not an alarm.
    const warning = alert.kind === "warning";
    const toast = element("div", "toast toast-alert" + (warning ? " toast-warning" : ""));
    toast.setAttribute("role", warning ? "status" : "alert");
    toast.dataset.alertId = String(alert.alert_id);

    const text = alertText(alert);
    toast.append(element("p", "toast-title", text.title), element("p", "toast-detail", text.body));

    if (typeof alert.url === "string" && DEVICE_PAGE.test(alert.url)) {
      const link = element("a", "toast-link", "View the chart");
      link.href = alert.url;
      toast.append(link);
    }
    const close = element("button", "toast-close", "\u00d7");
    close.type = "button";
    close.setAttribute("aria-label", warning ? "Dismiss warning" : "Dismiss alert");
    close.addEventListener("click", () => dismiss(toast));
    toast.append(close);

    toast.addEventListener("mouseenter", () => clearTimeout(toast.dismissTimer));
    toast.addEventListener("mouseleave", () => scheduleDismiss(toast));
    toast.addEventListener("focusin", () => clearTimeout(toast.dismissTimer));
    toast.addEventListener("focusout", () => scheduleDismiss(toast));
    toast.addEventListener("keydown", (event) => { if (event.key === "Escape") dismiss(toast); });
    return toast;
  }

  function showAlert(alert) {
    if (!alert || seenAlertIds.has(alert.alert_id)) return;
    seenAlertIds.add(alert.alert_id);
    unread += 1;
    renderBadge();

    const container = document.getElementById("toasts");
    if (container) {
      const toast = alertToast(alert);
      container.prepend(toast);
      scheduleDismiss(toast);
      const toasts = container.querySelectorAll(".toast-alert");
      for (let i = MAX_TOASTS; i < toasts.length; i += 1) dismiss(toasts[i]);
    }
    // Pages that list alerts (the monitor's alerts page) can add the new row.
    document.dispatchEvent(new CustomEvent("ems:alert", { detail: alert }));
  }

  function listen(socket) {
    if (!socket || socket.emsAlertsListening) return;
    socket.emsAlertsListening = true;
    let connectedBefore = socket.connected;
    socket.on("alert", showAlert);
    socket.on("connect", () => {
      // Alerts raised while we were offline are in the server's count.
      if (connectedBefore) refreshUnread();
      connectedBefore = true;
    });
  }

  document.addEventListener("ems:socket", (event) => listen(event.detail));
  // Marking alerts read (the alerts page) changes the count: ask the server again.
  document.addEventListener("ems:alerts-changed", () => refreshUnread());
  document.addEventListener("htmx:afterRequest", (event) => {
    const config = event.detail.requestConfig;
    if (config && config.verb === "post" && String(config.path).includes("/api/monitor/alerts/")) {
      refreshUnread();
    }
  });
  document.addEventListener("DOMContentLoaded", () => {
    refreshUnread();
    if (window.ems && window.ems.socket) listen(window.ems.socket);
  });

  window.ems = Object.assign(window.ems || {}, { refreshAlertBadge: refreshUnread, alertText: alertText });
})();
