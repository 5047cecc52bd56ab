"""The admin Pipeline page in Chromium: it refreshes itself while readings flow."""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest

from common.topology import READING_ROUTING_KEY, READINGS_EXCHANGE
from simulator.publisher import ConfirmedBurstPublisher
from tests.browser.conftest import playwright_api, sign_in

pytestmark = pytest.mark.browser
expect = playwright_api.expect

ROUTED_AT_LEAST = """(minimum) => [...document.querySelectorAll('[data-testid=routed]')]
    .reduce((total, cell) => total + Number(cell.textContent), 0) >= minimum"""


@pytest.fixture(scope="module")
def admin_login(create_account):
    account = create_account("admin", "Pipeline Admin")
    return account.email, account.password


def routed_total(page) -> int:
    return sum(int(text) for text in page.get_by_test_id("routed").all_inner_texts())


def test_the_pipeline_page_shows_readings_routed_to_every_replica_as_they_flow(new_page, admin_login, stack):
    page = new_page()
    sign_in(page, *admin_login, next_path="/monitor/pipeline")
    expect(page).to_have_url(re.compile("/monitor/pipeline$"))
    expect(page.locator("#pipeline-status tr[data-replica]")).to_have_count(3)
    before = routed_total(page)

    now = int(time.time() * 1000)
    bodies = [json.dumps({"timestamp": now - n * 600_000, "device_id": str(uuid.uuid4()),
                          "measurement_value": 0.1}).encode() for n in range(30)]
    bodies.append(b"not a reading")
    ConfirmedBurstPublisher(stack.settings, READINGS_EXCHANGE, READING_ROUTING_KEY).publish_all(bodies)

    # No reload: htmx polls the status fragment every 2 s.
    page.wait_for_function(ROUTED_AT_LEAST, arg=before + 30, timeout=20_000)
    expect(page.get_by_test_id("strategy")).to_have_text("round-robin")
    expect(page.locator("#pipeline-status")).to_contain_text("rejected by the balancer")
