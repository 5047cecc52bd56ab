// On the sign-in page: if the browser still holds a valid refresh cookie (the
// access token merely expired), renew it silently and go on to where the
// visitor was heading instead of asking for the password again.
(function () {
  "use strict";

  // The server's rule (web/sessions.py is_same_origin_path): a single "/" followed by
  // neither "/" nor "\" (both start another host), no control or whitespace character
  // (browsers drop tabs and newlines), and, as the browser parses it, this origin.
  function sameOriginPath(next) {
    if (typeof next !== "string" || !/^\/(?![\/\\])/.test(next)) return null;
    if (/[\u0000-\u001f\u007f-\u009f\s]/.test(next)) return null;
    let url;
    try {
      url = new URL(next, location.origin);
    } catch (error) {
      return null;
    }
    return url.origin === location.origin ? url.pathname + url.search + url.hash : null;
  }

  const next = new URLSearchParams(location.search).get("next");
  if (!next) return;
  const target = sameOriginPath(next) || "/";
  const match = document.cookie.match(/(?:^|; )csrf_refresh_token=([^;]*)/);
  if (!match) return;
  fetch("/auth/refresh", {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-CSRF-TOKEN": decodeURIComponent(match[1]) },
  }).then((response) => { if (response.ok) location.replace(target); });
})();
