"""One rule for `next`, on the server as in login.js: a path of this origin, nothing else."""

import pytest

from web.sessions import is_same_origin_path, safe_next

LEAVING = [
    "//evil.example",
    "/\\evil.example",
    "/\\\tevil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "https://evil.example",
    "http:/evil.example",
    "javascript:alert(1)",
    "evil.example",
    " /monitor/alerts",
    "/monitor/alerts\r\nSet-Cookie: x=1",
    "/monitor\u00a0alerts",
    "/\x7f/evil.example",
    "",
    None,
]
STAYING = ["/monitor/alerts", "/", "/%2F%2Fevil.example", "/devices?x=1#top", "/a\\b"]


@pytest.mark.parametrize("target", LEAVING)
def test_a_next_that_could_leave_the_site_is_replaced(target):
    assert not is_same_origin_path(target)
    assert safe_next(target, "/home") == "/home"


@pytest.mark.parametrize("target", STAYING)
def test_a_path_of_this_site_is_kept(target):
    assert safe_next(target, "/home") == target


@pytest.mark.parametrize("target", ["/\\evil.example", "/\\\tevil.example", "//evil.example"])
def test_login_never_redirects_off_site(app, make_user, target):
    alice = make_user("client")
    client = app.test_client()
    response = client.post("/login", data={"email": alice.email, "password": alice.password, "next": target})
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    # Signed in, /login sends on to `next` at once: the same rule applies.
    again = client.get("/login", query_string={"next": target})
    assert again.status_code == 302 and again.headers["Location"] == "/"
