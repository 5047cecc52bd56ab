"""Security headers on every page of every Flask service, and pages that need no
inline code, so that the strict Content-Security-Policy breaks nothing."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from common.security import CONTENT_SECURITY_POLICY, STRICT_TRANSPORT_SECURITY
from common.settings import REPOSITORY_ROOT, load_settings
from tests.web.conftest import sign_in
from tests.web.test_security import routes

EXPECTED = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
TEMPLATE_DIRS = ["web/templates", "common/templates", "support/templates", "monitor/templates"]
# What a CSP without 'unsafe-inline' or 'unsafe-eval' refuses to run or apply.
INLINE_CODE = {
    "inline script": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE),
    "event handler attribute": re.compile(r"\son[a-z]+\s*=", re.IGNORECASE),
    "hx-on (eval)": re.compile(r"\bhx-on", re.IGNORECASE),
    "js: value (eval)": re.compile(r"""hx-(?:vals|vars|headers)\s*=\s*['"]\s*(?:js|javascript):""",
                                   re.IGNORECASE),
    "javascript: URL": re.compile(r"javascript:", re.IGNORECASE),
    "style attribute": re.compile(r"\sstyle\s*=", re.IGNORECASE),
    "style element": re.compile(r"<style", re.IGNORECASE),
}


def concrete(rule: str) -> str:
    """Fill a route's variables with values of the right shape."""
    rule = re.sub(r"<int:[a-z_]+>", "1", rule)
    rule = re.sub(r"<uuid:[a-z_]+>", "0b6d5c7e-7f3a-4c55-9a63-3a1d6c2b8e11", rule)
    return re.sub(r"<[^>]+>", "x", rule)


def missing_headers(response) -> dict:
    return {name: response.headers.get(name) for name, value in EXPECTED.items()
            if response.headers.get(name) != value}


def sweep(app, client) -> list[str]:
    """GET every route of `app`; return the ones whose answer lacks a header."""
    failures = []
    for rule, method in routes(app):
        if method != "GET":
            continue
        for headers in ({}, {"HX-Request": "true"}):
            response = client.get(concrete(rule.rule), headers=headers)
            if missing_headers(response):
                failures.append(f"{rule.rule} ({response.status_code}): {missing_headers(response)}")
    return failures


def test_every_portal_page_sends_the_security_headers(app, make_user):
    anonymous = app.test_client()
    admin = sign_in(app, make_user("admin"))
    client = sign_in(app, make_user("client"))
    assert sweep(app, anonymous) == []
    assert sweep(app, admin.client) == []
    assert sweep(app, client.client) == []
    # Static files and unknown pages too.
    assert missing_headers(anonymous.get("/static/js/ems.js")) == {}
    assert missing_headers(anonymous.get("/no/such/page")) == {}


def test_support_and_monitor_pages_send_the_security_headers(migrated):
    from monitor import create_app as create_monitor
    from support import create_app as create_support

    for create in (create_support, create_monitor):
        app = create(migrated)
        app.config["TESTING"] = True
        assert sweep(app, app.test_client()) == [], create.__module__


def test_hsts_only_when_https_is_on(migrated):
    from web import create_app

    plain = create_app(migrated).test_client()
    assert "Strict-Transport-Security" not in plain.get("/login").headers
    # Behind the gateway, the scheme the browser used comes in X-Forwarded-Proto.
    forwarded = plain.get("/login", headers={"X-Forwarded-Proto": "https"})
    assert forwarded.headers["Strict-Transport-Security"] == STRICT_TRANSPORT_SECURITY
    public = create_app(dataclasses.replace(migrated, public_url="https://ems.example")).test_client()
    assert public.get("/login").headers["Strict-Transport-Security"] == STRICT_TRANSPORT_SECURITY


def test_production_cookies_are_secure_by_default(monkeypatch):
    monkeypatch.setenv("EMS_ENV", "production")
    monkeypatch.delenv("EMS_COOKIE_SECURE", raising=False)
    assert load_settings().cookie_secure is True
    monkeypatch.setenv("EMS_COOKIE_SECURE", "false")
    assert load_settings().cookie_secure is False


def test_no_template_needs_inline_code_or_style():
    found = []
    for directory in TEMPLATE_DIRS:
        for path in sorted(Path(REPOSITORY_ROOT, directory).rglob("*.html")):
            text = path.read_text(encoding="utf-8")
            for what, pattern in INLINE_CODE.items():
                for match in pattern.finditer(text):
                    line = text.count("\n", 0, match.start()) + 1
                    found.append(f"{path.relative_to(REPOSITORY_ROOT)}:{line}: {what}")
    assert found == []


@pytest.mark.parametrize("script", sorted(Path(REPOSITORY_ROOT, "web/static/js").glob("*.js")),
                         ids=lambda path: path.name)
def test_scripts_use_no_eval(script):
    text = script.read_text(encoding="utf-8")
    assert not re.search(r"\beval\(|new Function\(|setAttribute\(\s*['\"]on", text)


def test_pages_have_one_htmx_config_with_the_csp_settings_and_their_own(app, make_user):
    import json

    admin = sign_in(app, make_user("admin"))
    for browser, path in ((app.test_client(), "/login"), (admin, "/admin/devices")):
        html = browser.get(path).get_data(as_text=True)
        metas = re.findall(r"""<meta name="htmx-config" content='([^']*)'>""", html)
        assert len(metas) == 1, (path, metas)  # htmx reads the first only
        config = json.loads(metas[0])
        assert config["allowEval"] is False and config["includeIndicatorStyles"] is False
        assert {"code": "^(409|422|429)$", "swap": True, "error": False} in config["responseHandling"]
