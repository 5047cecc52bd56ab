"""Check and normalise what people type into forms and JSON bodies.

Every function returns clean values or raises `ValidationError` carrying one
message per field, so pages can show errors in place and the API can return them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from web.models import ROLE_ADMIN, ROLE_CLIENT

NAME_MAX = 100
EMAIL_MAX = 254
ADDRESS_MAX = 255
DESCRIPTION_MAX = 2000
PASSWORD_MIN = 8
PASSWORD_MAX = 256
# Far above any household or small business meter; a typo guard, not physics.
LIMIT_MAX_KWH = Decimal("100000")
LIMIT_STEP = Decimal("0.001")
ROLES = (ROLE_ADMIN, ROLE_CLIENT)
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ValidationError(ValueError):
    """Input that cannot be accepted; `errors` maps each field to its message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


class ConflictingInput(ValidationError):
    """Well-formed input that what is stored refuses: an e-mail already taken, an owner who is no client.

    The forms show it as any field error; the JSON API answers 409 (the input itself is valid).
    """


def clean_text(value, label: str, max_length: int, required: bool = True) -> str:
    """Return `value` stripped; raise ValueError if missing, not text or too long."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError(f"{label} must be text")
    value = value.strip()
    if required and not value:
        raise ValueError(f"{label} is required")
    if len(value) > max_length:
        raise ValueError(f"{label} must be at most {max_length} characters")
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in value):
        raise ValueError(f"{label} contains control characters")
    return value


def parse_limit(value) -> Decimal:
    """Return a maximum hourly consumption as kWh with 3 decimals; raise ValueError if invalid."""
    if isinstance(value, bool) or value is None or value == "":
        raise ValueError("maximum hourly consumption is required")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("maximum hourly consumption must be a number")
    try:
        number = Decimal(str(value).strip().replace(",", "."))
    except (InvalidOperation, ValueError) as error:
        raise ValueError("maximum hourly consumption must be a number") from error
    if not number.is_finite():
        raise ValueError("maximum hourly consumption must be a number")
    if number <= 0:
        raise ValueError("maximum hourly consumption must be greater than 0")
    if number > LIMIT_MAX_KWH:
        raise ValueError(f"maximum hourly consumption must be at most {LIMIT_MAX_KWH} kWh")
    number = number.quantize(LIMIT_STEP, rounding=ROUND_HALF_UP)
    if number <= 0:
        raise ValueError("maximum hourly consumption must be at least 0.001 kWh")
    return number


def clean_email(value) -> str:
    """Return a lower-case e-mail address; raise ValueError if it does not look like one."""
    email = clean_text(value, "e-mail", EMAIL_MAX).lower()
    if not EMAIL_PATTERN.match(email):
        raise ValueError("e-mail must look like name@example.com")
    return email


def clean_password(value) -> str:
    """Return a password of acceptable length (not stripped: spaces may be part of it)."""
    if not isinstance(value, str) or not value:
        raise ValueError("password is required")
    if len(value) < PASSWORD_MIN:
        raise ValueError(f"password must be at least {PASSWORD_MIN} characters")
    if len(value) > PASSWORD_MAX:
        raise ValueError(f"password must be at most {PASSWORD_MAX} characters")
    return value


def clean_role(value) -> str:
    """Return a known role; raise ValueError otherwise."""
    if value not in ROLES:
        raise ValueError("role must be admin or client")
    return value


def _collect(data: Mapping, cleaners: dict, partial: bool) -> dict:
    values, errors = {}, {}
    for field, cleaner in cleaners.items():
        if partial and field not in data:
            continue
        try:
            values[field] = cleaner(data.get(field))
        except ValueError as error:
            errors[field] = str(error)
    if errors:
        raise ValidationError(errors)
    return values


def validate_device(data: Mapping, partial: bool = False) -> dict:
    """Return the clean fields of a device (all of them unless `partial`)."""
    return _collect(data, {
        "name": lambda v: clean_text(v, "name", NAME_MAX),
        "description": lambda v: clean_text(v, "description", DESCRIPTION_MAX, required=False),
        "address": lambda v: clean_text(v, "address", ADDRESS_MAX, required=False),
        "max_hourly_kwh": parse_limit,
    }, partial)


def validate_new_user(data: Mapping) -> dict:
    """Return the clean fields of a user to create (e-mail, name, role, password)."""
    return _collect(data, {
        "email": clean_email,
        "name": lambda v: clean_text(v, "name", NAME_MAX),
        "role": lambda v: clean_role(ROLE_CLIENT if v is None else v),
        "password": clean_password,
    }, partial=False)


def validate_user_changes(data: Mapping) -> dict:
    """Return the clean fields of a user edit; an empty password means "keep it"."""
    changes = dict(data)
    if changes.get("password") in (None, ""):
        changes.pop("password", None)
    return _collect(changes, {
        "name": lambda v: clean_text(v, "name", NAME_MAX),
        "role": clean_role,
        "password": clean_password,
    }, partial=True)


def parse_owner_id(value) -> int | None:
    """Return a user id from a form or JSON value; empty or null means "nobody"."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValidationError({"user_id": "user_id must be an integer"})
    try:
        owner_id = int(value)
    except (TypeError, ValueError) as error:
        raise ValidationError({"user_id": "user_id must be an integer"}) from error
    if owner_id <= 0:
        raise ValidationError({"user_id": "user_id must be positive"})
    return owner_id


def parse_page(value) -> int:
    """Return a page number from a query string (1 for anything odd)."""
    try:
        return max(1, min(int(value), 100_000))
    except (TypeError, ValueError):
        return 1
