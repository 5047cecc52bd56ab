// Browser notifications (the Notification API) for alerts and warnings while the
// EMS tab is hidden. Opt-in twice: the browser's permission, asked only from the
// Profile page's button (never on page load), and the user's stored preference
// (users.notify_browser, the Profile form's checkbox), read from /api/me once per
// page and only when the permission is granted. notifications.js announces every
// new alert with the `ems:alert` event and supplies the texts (ems.alertText).
(function () {
  "use strict";

  const PROFILE_URL = "/api/me";
  const DEVICE_PAGE = /^\/monitor\/devices\/[0-9a-f-]{36}$/;
  const supported = "Notification" in window;
  let preference = null;  // a promise of the stored opt-in, asked once per page

  async function storedPreference(retried) {
    try {
      const response = await fetch(PROFILE_URL, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.status === 401 && !retried && window.ems && await window.ems.refreshAccessToken()) {
        return storedPreference(true);
      }
      return response.ok && (await response.json()).notify_browser === true;
    } catch (error) {
      return false;  // offline: no notification rather than an unwanted one
    }
  }

  function optedIn() {
    if (!supported || Notification.permission !== "granted") return Promise.resolve(false);
    preference = preference || storedPreference(false);
    return preference;
  }

  async function notify(event) {
    const alert = event.detail;
    if (!alert || !document.hidden || !window.ems || !window.ems.alertText) return;
    if (!(await optedIn())) return;
    const text = window.ems.alertText(alert);
    // The tag makes a redelivered alert replace its notification instead of adding one.
    const notification = new Notification(text.title, { body: text.body, tag: "ems-alert-" + alert.alert_id });
    notification.addEventListener("click", () => {
      window.focus();
      if (typeof alert.url === "string" && DEVICE_PAGE.test(alert.url)) window.location.assign(alert.url);
      notification.close();
    });
  }

  // --- the Profile page: the permission button and what this browser allows ---

  const PERMISSION_TEXT = {
    granted: "This browser may show EMS notifications.",
    denied: "This browser blocks EMS notifications: allow them in the site's settings, then reload.",
    default: "This browser has not been asked yet.",
  };

  function renderPermission(button, status) {
    const permission = supported ? Notification.permission : "unsupported";
    status.textContent = PERMISSION_TEXT[permission] || "This browser cannot show notifications.";
    button.hidden = permission !== "default";
  }

  function setUpProfile() {
    const button = document.getElementById("allow-notifications");
    const status = document.getElementById("notification-permission");
    if (!button || !status) return;
    renderPermission(button, status);
    button.addEventListener("click", async () => {
      const permission = await Notification.requestPermission();
      // Allowed here: tick the preference too; the user saves the form.
      const checkbox = document.getElementById("notify-browser");
      if (permission === "granted" && checkbox) checkbox.checked = true;
      renderPermission(button, status);
    });
  }

  document.addEventListener("ems:alert", notify);
  // The Profile form swaps itself when saved: ask for the stored preference again.
  document.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.target && event.detail.target.id === "preferences") {
      preference = null;
      setUpProfile();
    }
  });
  document.addEventListener("DOMContentLoaded", setUpProfile);
})();
