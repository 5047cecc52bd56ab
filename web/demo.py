"""Demo data for `make run`: one administrator, two clients and their meters.

The demo logins live here and only here; `python -m web demo-logins` prints them.
Device ids are fixed so that re-seeding finds the same devices again.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from decimal import Decimal

from argon2 import PasswordHasher

from web.extensions import db
from web.models import ROLE_ADMIN, ROLE_CLIENT, Device, User
from web.outbox import record_event

DEMO_NAMESPACE = uuid.UUID("6f1c8c52-3d0e-4a53-9a7e-5d1b2f0c7a10")


@dataclass(frozen=True)
class DemoAccount:
    email: str
    name: str
    role: str
    password: str


@dataclass(frozen=True)
class DemoDevice:
    key: str
    owner_email: str
    name: str
    address: str
    max_hourly_kwh: str
    description: str

    @property
    def id(self) -> str:
        return str(uuid.uuid5(DEMO_NAMESPACE, self.key))


DEMO_ACCOUNTS = (
    DemoAccount("admin@ems.local", "Ada Admin", ROLE_ADMIN, "admin-demo-2024"),
    DemoAccount("alice@ems.local", "Alice Martin", ROLE_CLIENT, "alice-demo-2024"),
    DemoAccount("bob@ems.local", "Bob Novak", ROLE_CLIENT, "bob-demo-2024"),
)

DEMO_DEVICES = (
    DemoDevice("alice-heat-pump", "alice@ems.local", "Heat pump", "12 Elm Street, Springfield", "3.5",
               "Air-to-water heat pump, ground floor"),
    DemoDevice("alice-ev-charger", "alice@ems.local", "EV charger", "12 Elm Street, Springfield", "7.4",
               "Wallbox in the garage, 32 A"),
    DemoDevice("alice-kitchen", "alice@ems.local", "Kitchen circuit", "12 Elm Street, Springfield", "0.5",
               "Oven, dishwasher and kettle; low limit on purpose, the demo pushes it over"),
    DemoDevice("bob-main-meter", "bob@ems.local", "Main meter", "4 Harbour Road, Apt 21, Portsmouth", "2.0",
               "Whole apartment"),
    DemoDevice("bob-boiler", "bob@ems.local", "Water boiler", "4 Harbour Road, Apt 21, Portsmouth", "1.2",
               "80 l electric boiler"),
)


def seed(hasher: PasswordHasher) -> dict[str, int]:
    """Create whatever demo account or device is missing; return how many of each were created."""
    created = {"users": 0, "devices": 0}
    users = {}
    for account in DEMO_ACCOUNTS:
        user = db.session.query(User).filter_by(email=account.email).one_or_none()
        if user is None:
            user = User(email=account.email, name=account.name, role=account.role,
                        password_hash=hasher.hash(account.password))
            db.session.add(user)
            db.session.flush()
            record_event("user.created", user=user)
            created["users"] += 1
        users[account.email] = user
    for spec in DEMO_DEVICES:
        if db.session.get(Device, spec.id) is not None:
            continue
        device = Device(id=spec.id, name=spec.name, address=spec.address, description=spec.description,
                        max_hourly_kwh=Decimal(spec.max_hourly_kwh), owner_id=users[spec.owner_email].id)
        db.session.add(device)
        db.session.flush()
        record_event("device.created", device=device)
        created["devices"] += 1
    db.session.commit()
    return created


def demo_users_lines() -> str:
    """Return the demo users that exist as JSON lines: {"id", "name", "role"} (support's seed reads them)."""
    emails = [account.email for account in DEMO_ACCOUNTS]
    users = db.session.query(User).filter(User.email.in_(emails)).order_by(User.id)
    return "\n".join(json.dumps({"id": user.id, "name": user.name, "role": user.role}) for user in users)


def demo_logins_text() -> str:
    """Return the demo logins as a small table for the terminal."""
    lines = ["Demo logins:"]
    for account in DEMO_ACCOUNTS:
        lines.append(f"  {account.role:<6} {account.email:<18} {account.password}")
    return "\n".join(lines)
