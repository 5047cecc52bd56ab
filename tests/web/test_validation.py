"""Input rules of the portal, as plain functions (no database, no HTTP)."""

from decimal import Decimal

import pytest

from web.ratelimit import attempt_key
from web.sessions import safe_next
from web.validation import (
    ValidationError,
    parse_limit,
    parse_owner_id,
    parse_page,
    validate_device,
    validate_new_user,
    validate_user_changes,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0.5", Decimal("0.500")),
        (3, Decimal("3.000")),
        (1.25, Decimal("1.250")),
        (" 2,5 ", Decimal("2.500")),
        ("7.4", Decimal("7.400")),
        ("0.0015", Decimal("0.002")),
    ],
)
def test_limit_is_kept_in_kwh_with_three_decimals(raw, expected):
    assert parse_limit(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "required"),
        (None, "required"),
        (True, "required"),
        ("-1", "greater than 0"),
        (0, "greater than 0"),
        ("abc", "must be a number"),
        ("NaN", "must be a number"),
        (float("inf"), "must be a number"),
        ("1e9", "at most"),
        ("0.0001", "at least 0.001"),
    ],
)
def test_limit_that_is_not_a_positive_number_is_refused(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_limit(raw)


def test_device_fields_are_trimmed_and_optional_ones_default_to_empty():
    fields = validate_device({"name": "  Heat pump ", "max_hourly_kwh": "3"})
    assert fields == {
        "name": "Heat pump",
        "description": "",
        "address": "",
        "max_hourly_kwh": Decimal("3.000"),
    }


def test_every_bad_device_field_gets_its_own_message():
    with pytest.raises(ValidationError) as caught:
        validate_device({"name": "x" * 10_000, "address": 5, "max_hourly_kwh": "-2"})
    assert set(caught.value.errors) == {"name", "address", "max_hourly_kwh"}
    assert "at most 100 characters" in caught.value.errors["name"]


def test_blank_name_is_refused():
    with pytest.raises(ValidationError, match="name is required"):
        validate_device({"name": "   ", "max_hourly_kwh": "1"})


def test_partial_device_edit_checks_only_what_is_sent():
    assert validate_device({"address": "2 Main St"}, partial=True) == {"address": "2 Main St"}


def test_new_user_needs_a_real_email_and_a_long_enough_password():
    with pytest.raises(ValidationError) as caught:
        validate_new_user({"email": "not-an-email", "name": "Eve", "password": "short"})
    assert set(caught.value.errors) == {"email", "password"}


def test_new_user_is_a_client_unless_told_otherwise_and_email_is_lowercased():
    fields = validate_new_user({"email": "Eve@Example.COM", "name": "Eve", "password": "long enough"})
    assert fields["role"] == "client" and fields["email"] == "eve@example.com"


def test_user_edit_with_empty_password_keeps_the_password():
    assert validate_user_changes({"name": "Eve", "password": ""}) == {"name": "Eve"}


def test_unknown_role_is_refused():
    with pytest.raises(ValidationError, match="role must be admin or client"):
        validate_user_changes({"role": "root"})


@pytest.mark.parametrize(("raw", "expected"), [("", None), (None, None), ("12", 12), (7, 7)])
def test_owner_id_accepts_ids_and_nobody(raw, expected):
    assert parse_owner_id(raw) == expected


@pytest.mark.parametrize("raw", ["abc", True, -3, 0, "1.5"])
def test_owner_id_must_be_a_positive_integer(raw):
    with pytest.raises(ValidationError):
        parse_owner_id(raw)


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, 1), ("3", 3), ("-2", 1), ("x", 1), ("10000000", 100_000)]
)
def test_page_number_is_always_usable(raw, expected):
    assert parse_page(raw) == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/admin/users?q=a", "/admin/users?q=a"),
        ("/", "/"),
        (None, "/home"),
        ("", "/home"),
        ("https://evil.example/", "/home"),
        ("//evil.example/x", "/home"),
        ("/\\evil.example", "/home"),
        ("javascript:alert(1)", "/home"),
        ("admin", "/home"),
        ("/a\nb", "/home"),
    ],
)
def test_next_must_be_a_path_on_this_site(target, expected):
    assert safe_next(target, "/home") == expected


def test_rate_limit_key_ignores_email_case_but_not_the_address():
    assert attempt_key("Eve@Example.com", "10.0.0.1") == attempt_key("eve@example.com ", "10.0.0.1")
    assert attempt_key("eve@example.com", "10.0.0.1") != attempt_key("eve@example.com", "10.0.0.2")
