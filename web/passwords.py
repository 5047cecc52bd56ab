"""Password hashing with Argon2id (argon2-cffi)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from common.settings import Settings


def password_hasher(settings: Settings) -> PasswordHasher:
    """Return the hasher: RFC 9106 low-memory profile, or a cheap one for the test suite.

    The parameters are stored inside each hash, so hashes made with either verify anywhere.
    """
    if settings.env == "test":
        return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    return PasswordHasher()


def verify_password(hasher: PasswordHasher, password_hash: str, password: str) -> bool:
    """Tell whether `password` matches `password_hash`."""
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
