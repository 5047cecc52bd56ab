// Shared browser glue for every EMS page: CSRF header on htmx requests, silent
// token refresh, and the one Socket.IO connection other scripts listen on.
(function () {
  "use strict";

  function cookie(name) {
    const match = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return match ? decodeURIComponent(match[1]) : null;
  }

  // flask-jwt-extended's double-submit CSRF protection: echo the cookie in a header.
  function csrfHeaders() {
    const token = cookie("csrf_access_token");
    return token ? { "X-CSRF-TOKEN": token } : {};
  }

  let refreshing = null;
  // Exchange the refresh cookie for a new access token (once at a time).
  function refreshAccessToken() {
    if (!refreshing) {
      refreshing = fetch("/auth/refresh", {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-TOKEN": cookie("csrf_refresh_token") || "" },
      }).then((response) => response.ok).finally(() => { refreshing = null; });
    }
    return refreshing;
  }

  document.addEventListener("htmx:configRequest", (event) => {
    Object.assign(event.detail.headers, csrfHeaders());
  });

  // An expired access token: refresh it silently and repeat the request once.
  document.addEventListener("htmx:responseError", async (event) => {
    const xhr = event.detail.xhr;
    const element = event.detail.elt;
    if (xhr.status !== 401 || element.dataset.retried) return;
    if (await refreshAccessToken()) {
      element.dataset.retried = "1";
      htmx.trigger(element, event.detail.requestConfig.triggeringEvent?.type || "click");
    } else {
      window.location = "/login?next=" + encodeURIComponent(location.pathname + location.search);
    }
  });

  // A section whose content failed to load shows its <template id=data-error-template>
  // instead (a script, not hx-on: the Content-Security-Policy forbids inline code).
  function showErrorTemplate(event) {
    const element = event.detail.elt;
    const template = element && element.dataset && element.dataset.errorTemplate
      && document.getElementById(element.dataset.errorTemplate);
    if (template) element.replaceChildren(template.content.cloneNode(true));
  }
  document.addEventListener("htmx:responseError", showErrorTemplate);
  document.addEventListener("htmx:sendError", showErrorTemplate);

  // Bar widths come as data-share (percent): style attributes are refused by the CSP.
  document.addEventListener("htmx:load", (event) => {
    event.detail.elt.querySelectorAll("[data-share]").forEach((bar) => {
      bar.style.width = Number(bar.dataset.share) + "%";
    });
  });

  function setConnectionState(online) {
    const badge = document.getElementById("connection-status");
    if (!badge) return;
    badge.classList.toggle("offline", !online);
    badge.title = online ? "Live updates on" : "Offline: reconnecting…";
    badge.textContent = online ? "" : "offline";
  }

  // One Socket.IO connection per page, authenticated by the JWT cookie.
  function connectSocket() {
    if (!document.body.dataset.viewerRole || typeof io === "undefined") return null;
    const socket = io({
      path: "/socket.io",
      transports: ["websocket", "polling"],
      reconnectionDelay: 500,
      reconnectionDelayMax: 10000,
      withCredentials: true,
    });
    socket.on("connect", () => setConnectionState(true));
    socket.on("disconnect", async (reason) => {
      setConnectionState(false);
      // The notifier closes a socket when its access token expires, or when the session
      // was ended ("log out everywhere", a role change, a password reset, a deletion).
      // The client does not come back by itself after that: refresh and reconnect, or,
      // when the session is over, go to the sign-in page.
      if (reason !== "io server disconnect") return;
      if (await refreshAccessToken()) socket.connect();
      else window.location = "/login?next=" + encodeURIComponent(location.pathname + location.search);
    });
    socket.on("connect_error", async (error) => {
      setConnectionState(false);
      // A refused handshake usually means the access token expired.
      // Socket.IO does not retry a refused handshake by itself: try again with the new token.
      if (error && error.message && error.message.includes("unauthorized") && !socket.active
          && await refreshAccessToken()) setTimeout(() => socket.connect(), 1000);
    });
    return socket;
  }

  // Pages show times in the viewer's time zone; the server reads it from this cookie.
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (zone && cookie("tz") !== zone) {
    document.cookie = "tz=" + encodeURIComponent(zone) + "; path=/; max-age=31536000; SameSite=Lax";
  }

  window.ems = { cookie, csrfHeaders, refreshAccessToken };
  document.addEventListener("DOMContentLoaded", () => {
    window.ems.socket = connectSocket();
    document.dispatchEvent(new CustomEvent("ems:socket", { detail: window.ems.socket }));
  });
})();
