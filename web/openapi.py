"""The one OpenAPI document of every JSON route behind the gateway, served at /api/openapi.json.

Each service keeps the description of its own routes beside its code (web/openapi.json,
monitor/openapi.json, support/openapi.json; tests/test_openapi.py checks each against its
Flask url_map); this module merges them. A schema two services both define must be
the same in both, so that a `$ref` means one thing in the merged document.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICE_DOCUMENTS = {name: ROOT / name / "openapi.json" for name in ("web", "monitor", "support")}
TITLE = "EMS API"
DESCRIPTION = (
    "Every JSON route behind the gateway: the portal (`/api/...`: login, users, devices), the monitor "
    "(`/api/monitor/...`: consumption, export, alerts) and support (`/api/support/...`: chat history, "
    "inbox). Authenticate with `POST /api/auth/login` and send `Authorization: Bearer <token>`; "
    "browsers may use the `access_token_cookie` instead, then state-changing requests need the "
    "`X-CSRF-TOKEN` header (value of the `csrf_access_token` cookie). Errors are `{\"error\": ...}` "
    "(422 adds `fields`); a method a path does not have is answered 405 with `Allow`."
)


class ConflictingDefinitions(ValueError):
    """Two services define one path or one component differently."""


def service_document(name: str) -> dict:
    """Return one service's own OpenAPI document."""
    return json.loads(SERVICE_DOCUMENTS[name].read_text())


@cache
def gateway_document() -> dict:
    """Return the merged document (read once per process; the files ship with the code)."""
    documents = [service_document(name) for name in SERVICE_DOCUMENTS]
    merged = copy.deepcopy(documents[0])
    merged["info"] = {**merged["info"], "title": TITLE, "description": DESCRIPTION}
    for document in documents[1:]:
        _merge_into(merged["paths"], document["paths"], "path")
        for section, entries in document.get("components", {}).items():
            _merge_into(merged.setdefault("components", {}).setdefault(section, {}), entries, section)
    return merged


def _merge_into(target: dict, entries: dict, kind: str) -> None:
    for key, value in entries.items():
        if key in target and target[key] != value:
            raise ConflictingDefinitions(f"{kind} {key!r} is defined differently by two services")
        target[key] = value
