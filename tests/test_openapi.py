"""One OpenAPI document for every JSON route behind the gateway, exact to the implementation.

Each service's own document lists exactly its Flask routes under /api/ (no route left
out, no phantom one); the portal serves the merged document; and Schemathesis, run
against the running services through the gateway (a throw-away database and vhost of
their own), finds no failure of any of its checks and no 5xx, as an administrator and
as a client.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from common.settings import load_settings
from migrations.runner import upgrade
from tests.isolation import environment, isolated
from tests.processes import Stack, free_port
from web.openapi import SERVICE_DOCUMENTS, gateway_document, service_document

HTTP_METHODS = {"get", "put", "post", "patch", "delete"}
# Enough to try every operation's bounds and formats, within the suite's time budget.
MAX_EXAMPLES = 5
ACCOUNT_PASSWORD = "openapi test password"  # noqa: S105 - test accounts only


def create_service_app(name: str, settings):
    if name == "web":
        from web import create_app
    elif name == "monitor":
        from monitor import create_app
    else:
        from support import create_app
    return create_app(settings)


def openapi_path(rule: str) -> str:
    """Return a Flask rule as an OpenAPI path: <int:alert_id> -> {alert_id}, <any(a, b):x> -> {x}."""
    return re.sub(r"<(?:[a-z]+(?:\([^)]*\))?:)?([a-z_]+)>", r"{\1}", rule)


def api_routes(app) -> set[tuple[str, str]]:
    return {(openapi_path(rule.rule), method.lower()) for rule in app.url_map.iter_rules()
            if rule.rule.startswith("/api/") for method in rule.methods - {"HEAD", "OPTIONS"}}


def documented_operations(document: dict) -> set[tuple[str, str]]:
    return {(path, method) for path, item in document["paths"].items() for method in item
            if method in HTTP_METHODS}


@pytest.mark.parametrize("service", sorted(SERVICE_DOCUMENTS))
def test_each_service_documents_exactly_its_api_routes(service, migrated):
    """Every JSON route is described and nothing else is (a phantom path would fail here)."""
    app = create_service_app(service, migrated)
    assert api_routes(app) == documented_operations(service_document(service))


def test_the_gateway_document_holds_every_services_paths_once():
    merged = gateway_document()
    for service in SERVICE_DOCUMENTS:
        assert documented_operations(service_document(service)) <= documented_operations(merged)
    assert len(merged["paths"]) == sum(len(service_document(name)["paths"]) for name in SERVICE_DOCUMENTS)
    assert {"/api/users", "/api/monitor/summary", "/api/support/conversations"} <= set(merged["paths"])


# --- Schemathesis against the running services --------------------------------


@pytest.fixture(scope="module")
def api_stack():
    """Run the gateway and the three HTTP services on a database and vhost of their own."""
    ports = {f"EMS_{name}_PORT": str(free_port()) for name in ("GATEWAY", "WEB", "SUPPORT", "NOTIFIER",
                                                              "MONITOR_API")}
    common = {"EMS_ENV": "test", "EMS_JWT_SECRET": "test-secret-" + secrets.token_hex(16),
              "EMS_LOGIN_ATTEMPTS_PER_MINUTE": "100000", "EMS_METRICS_BASE_PORT": "0", **ports}
    with isolated(f"openapi-{secrets.token_hex(3)}", common) as variables:
        with environment(variables):
            settings = load_settings()
        upgrade(settings)
        stack = Stack(["gateway", "web", "support", "monitor_api"], env=variables)
        try:
            stack.start([int(ports[name]) for name in ("EMS_GATEWAY_PORT", "EMS_WEB_PORT", "EMS_SUPPORT_PORT",
                                                       "EMS_MONITOR_API_PORT")])
            stack.url = f"http://127.0.0.1:{ports['EMS_GATEWAY_PORT']}"
            stack.settings = settings
            yield stack
        finally:
            stack.stop()


def bearer_token(stack, role: str) -> str:
    """Create an account of `role` in the stack's database and log it in through the gateway."""
    from web import create_app
    from web.accounts import create_user

    portal = create_app(stack.settings)
    email = f"openapi-{role}-{secrets.token_hex(4)}@example.test"
    with portal.app_context():
        create_user({"email": email, "name": f"OpenAPI {role}", "role": role, "password": ACCOUNT_PASSWORD},
                    portal.extensions["ems_password_hasher"])
    credentials = {"email": email, "password": ACCOUNT_PASSWORD}
    response = requests.post(f"{stack.url}/api/auth/login", json=credentials, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


# The coverage phase's boundary and format probes are the same whoever sends them: the
# administrator's run takes them; the client's (mostly 403s) fuzzes and chains calls.
PHASES = {"admin": "coverage,fuzzing,stateful", "client": "fuzzing,stateful"}


def schemathesis_run(stack, role: str, report_dir: Path) -> subprocess.Popen:
    """Start Schemathesis with every check against the gateway's document, as `role`."""
    command = [
        str(Path(sys.executable).parent / "schemathesis"), "run", f"{stack.url}/api/openapi.json",
        "--url", stack.url, "--checks", "all", "--phases", PHASES[role], "--max-examples", str(MAX_EXAMPLES),
        "--seed", "15", "--header", f"Authorization: Bearer {bearer_token(stack, role)}",
        "--request-timeout", "30", "--report", "junit", "--report-dir", str(report_dir / role),
        # One worker: Hypothesis describing strategies in several threads at once trips CPython 3.11's parser.
        "--workers", "1",
    ]
    # Run where its cache (.schemathesis/) is thrown away with the test's directory.
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=report_dir)


def test_schemathesis_finds_no_failure_against_the_running_services(api_stack, tmp_path: Path):
    """Every check of Schemathesis, as an administrator and as a client at once: no failure, no 5xx."""
    runs = {role: schemathesis_run(api_stack, role, tmp_path) for role in PHASES}
    outputs = {role: run.communicate(timeout=600)[0] for role, run in runs.items()}
    for role, run in runs.items():
        assert run.returncode == 0, f"as {role}:\n" + outputs[role][-12000:]
