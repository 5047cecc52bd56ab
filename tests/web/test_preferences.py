"""The Profile page's preferences: the time zone detected at the first sign-in, changed by
the user, carried to every service in the access token's `tz` claim; the notification opt-in."""

from __future__ import annotations

from flask_jwt_extended import decode_token
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import texts
from tests.web.conftest import sign_in
from web.extensions import db
from web.models import User


def user_row(app, user_id: int) -> User:
    with app.app_context():
        user = db.session.get(User, user_id)
        db.session.expunge(user)
        return user


def access_claims(app, browser) -> dict:
    with app.app_context():
        return decode_token(browser.get_cookie("access_token_cookie").value)


def sign_in_from(app, person, timezone: str):
    """Sign in through the form as a browser in `timezone` (timezone.js fills the hidden field)."""
    client = app.test_client()
    response = client.post("/login", data={"email": person.email, "password": person.password,
                                           "timezone": timezone})
    assert response.status_code == 303, response.data
    return client


def test_the_first_sign_in_stores_the_browsers_zone_and_later_ones_keep_it(app, make_user):
    alice = make_user("client")
    first = sign_in_from(app, alice, "Europe/Bucharest")
    assert user_row(app, alice.id).timezone == "Europe/Bucharest"
    assert access_claims(app, first)["tz"] == "Europe/Bucharest"
    # Travelling: the stored choice stands until she changes it on the Profile page.
    sign_in_from(app, alice, "America/New_York")
    assert user_row(app, alice.id).timezone == "Europe/Bucharest"


def test_a_zone_the_browser_invents_is_not_stored_and_the_token_has_no_zone(app, make_user):
    bob = make_user("client")
    for invented in ("Mars/Olympus_Mons", "../../etc/passwd", "x" * 500, ""):
        browser = sign_in_from(app, bob, invented)
        assert user_row(app, bob.id).timezone is None
        assert "tz" not in access_claims(app, browser)


def test_changing_the_zone_on_the_profile_page_reissues_this_browsers_token(app, make_user):
    carol = make_user("client", name="Carol")
    browser = sign_in(app, carol)
    page = browser.get("/profile").get_data(as_text=True)
    assert 'name="timezone"' in page and '<option value="Asia/Kathmandu"' in page and "notify_browser" in page
    response = browser.htmx("POST", "/profile/preferences",
                            data={"name": "Carol K", "timezone": "Asia/Kathmandu", "notify_browser": "on"})
    assert response.status_code == 200, response.data
    assert "Times are now shown in Asia/Kathmandu" in response.get_data(as_text=True)
    row = user_row(app, carol.id)
    assert (row.name, row.timezone, row.notify_browser) == ("Carol K", "Asia/Kathmandu", True)
    assert access_claims(app, browser)["tz"] == "Asia/Kathmandu"
    # The session goes on: no token version bump.
    assert browser.get("/profile").status_code == 200
    browser.htmx("POST", "/profile/preferences", data={"name": "Carol K", "timezone": "UTC"})
    assert user_row(app, carol.id).notify_browser is False


def test_an_unknown_zone_or_an_empty_name_is_refused_in_place(app, make_user):
    dave = make_user("client", name="Dave")
    browser = sign_in(app, dave)
    response = browser.htmx("POST", "/profile/preferences", data={"name": " ", "timezone": "Europe/Atlantis"})
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert "name is required" in text and "choose a time zone from the list" in text
    assert user_row(app, dave.id).name == "Dave"
    # Without the CSRF header a cookie-authenticated post is refused.
    assert browser.post("/profile/preferences", data={"name": "X", "timezone": "UTC"},
                        headers={"HX-Request": "true"}).status_code in (401, 403)


# --- the password ---

def test_changing_the_password_needs_the_current_one_and_ends_every_other_session(app, make_user):
    erin = make_user("client", name="Erin")
    laptop, phone = sign_in(app, erin), sign_in(app, erin)
    refused = laptop.htmx("POST", "/profile/password", data={
        "current_password": "not it at all", "new_password": "a new secret 123",
        "new_password_confirm": "a new secret 123"})
    assert refused.status_code == 422
    assert "this is not your current password" in refused.get_data(as_text=True)
    assert "a new secret 123" not in refused.get_data(as_text=True)  # never echoed

    changed = laptop.htmx("POST", "/profile/password", data={
        "current_password": erin.password, "new_password": "a new secret 123",
        "new_password_confirm": "a new secret 123"})
    assert changed.status_code == 200, changed.data
    assert "Password changed" in changed.get_data(as_text=True)
    assert laptop.get("/profile").status_code == 200  # this browser goes on, with a new session
    assert phone.get("/profile").status_code in (302, 401)  # whoever else held a session is out
    fresh = app.test_client()
    assert fresh.post("/login", data={"email": erin.email, "password": erin.password}).status_code == 401
    assert fresh.post("/login", data={"email": erin.email, "password": "a new secret 123"}).status_code == 303


def test_a_new_password_too_short_or_mistyped_is_refused_field_by_field(app, make_user):
    frank = make_user("client")
    browser = sign_in(app, frank)
    for new, confirm, field_message in (("short", "short", "at least 8 characters"),
                                        ("long enough 1", "long enough 2", "do not match")):
        response = browser.htmx("POST", "/profile/password", data={
            "current_password": frank.password, "new_password": new, "new_password_confirm": confirm})
        assert response.status_code == 422 and field_message in response.get_data(as_text=True)
    assert browser.get("/profile").status_code == 200  # nothing changed, the session goes on


def test_any_preferences_form_is_saved_or_refused_with_its_field_errors(app, make_user):
    browser = sign_in(app, make_user("client"))  # one sign-in: hashing a password per example is slow

    @settings(max_examples=60)
    @given(form=st.dictionaries(st.sampled_from(["name", "timezone", "notify_browser", "other"]),
                                st.one_of(texts, st.sampled_from(["Asia/Kolkata", "UTC", "on", "x" * 200])),
                                max_size=4))
    def post(form):
        response = browser.htmx("POST", "/profile/preferences", data=form)
        assert response.status_code in (200, 422), response.data
        if response.status_code == 422:
            assert 'class="field-error"' in response.get_data(as_text=True)

    post()
