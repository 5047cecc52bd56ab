"""What the browser-notification script reads: the user's own opt-in from GET /api/me,
and the Profile page's button that asks the browser's permission (never the page itself)."""

from __future__ import annotations

from tests.web.conftest import api_token, sign_in


def test_api_me_tells_the_signed_in_user_their_own_opt_in_and_zone(app, make_user):
    dana = make_user("client", name="Dana")
    browser = sign_in(app, dana)
    assert browser.get("/api/me").json["notify_browser"] is False
    browser.htmx("POST", "/profile/preferences",
                 data={"name": "Dana", "timezone": "Europe/Bucharest", "notify_browser": "on"})
    me = app.test_client().get("/api/me", headers=api_token(app, dana)).json
    assert (me["id"], me["notify_browser"], me["timezone"]) == (dana.id, True, "Europe/Bucharest")


def test_the_profile_page_has_the_permission_button_and_no_script_of_its_own(app, make_user):
    page = sign_in(app, make_user("client")).get("/profile").get_data(as_text=True)
    assert 'id="allow-notifications"' in page and 'type="button"' in page
    assert '<script src="/static/js/browser_notifications.js" defer></script>' in page
    assert "<script>" not in page  # the CSP allows no inline script: the button is wired statically
