// On the sign-in page: if the browser still holds a valid refresh cookie (the
// access token merely expired), renew it silently and go on to where the
// visitor was heading instead of asking for the password again.
(function () {
  "use strict";
  const params = new URLSearchParams(location.search);
  const next = params.get("next");
  if (!next || !next.startsWith("/") || next.startsWith("//")) return;
  if (!document.cookie.includes("csrf_refresh_token=")) return;
  const match = document.cookie.match(/(?:^|; )csrf_refresh_token=([^;]*)/);
  fetch("/auth/refresh", {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-CSRF-TOKEN": match ? decodeURIComponent(match[1]) : "" },
  }).then((response) => { if (response.ok) location.replace(next); });
})();
