"""The portal's tables: users, devices, refresh tokens, the event outbox, login attempts, settings.

The schema itself is created by the Alembic history in migrations/web; these
classes only map it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Integer, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from common.db import utcnow
from web.extensions import db

ROLE_ADMIN = "admin"
ROLE_CLIENT = "client"


def new_device_id() -> str:
    """Return a fresh device id (a canonical UUID string)."""
    return str(uuid.uuid4())


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16), default=ROLE_CLIENT)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Carried in every token; bumping it ends every session of the user (common.auth).
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    # IANA name; None until the browser reports it at the first sign-in (web.preferences).
    timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Opted in to browser notifications (the Notification API) for alerts and warnings.
    notify_browser: Mapped[bool] = mapped_column(Boolean, default=False)

    devices: Mapped[list[Device]] = relationship(back_populates="owner", passive_deletes=True)

    @property
    def is_admin(self) -> bool:
        return self.role == ROLE_ADMIN


class Device(db.Model):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_device_id)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    address: Mapped[str] = mapped_column(String(255), default="")
    max_hourly_kwh: Mapped[Decimal] = mapped_column(Numeric(10, 3))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    owner: Mapped[User | None] = relationship(back_populates="devices")


class OutboxEvent(db.Model):
    """An event written in the same transaction as the change it describes.

    Its id is the event's `sequence`; the relay publishes rows in id order and
    sets `published_at` once the broker has confirmed.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    routing_key: Mapped[str] = mapped_column(String(64))
    body: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class RefreshToken(db.Model):
    """One refresh token issued, by its `jti`, in the family of one sign-in.

    A refresh token is used once: using it issues the next one of the family. Using
    one again (a stolen copy) revokes the whole family.
    """

    __tablename__ = "refresh_tokens"

    jti: Mapped[str] = mapped_column(String(36), primary_key=True)
    family: Mapped[str] = mapped_column(String(36), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    issued_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class LoginAttempt(db.Model):
    """A failed login, counted per e-mail and client address for rate limiting."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64))
    attempted_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class PortalSetting(db.Model):
    """A setting an administrator can change at run time (e.g. whether sign-up is open)."""

    __tablename__ = "portal_settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))
