"""Every EMS setting, read from `EMS_*` environment variables in this one place.

Local defaults are safe for a developer machine. Secrets (JWT key, database
password, LLM key) have no production default: with `EMS_ENV=production` a
missing secret stops the service at start-up. Each secret may also be given as
a file (`EMS_<NAME>_FILE`), which is how Docker Swarm hands secrets over.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

DEVELOPMENT_JWT_SECRET = "ems-development-only-jwt-secret-change-me"  # noqa: S105


class SettingsError(RuntimeError):
    """A setting is missing or malformed."""


def _raw(name: str) -> str | None:
    """Return the value of EMS_<name>, or the contents of the file EMS_<name>_FILE."""
    value = os.environ.get(f"EMS_{name}")
    if value is not None:
        return value
    path = os.environ.get(f"EMS_{name}_FILE")
    if path:
        return Path(path).read_text(encoding="utf-8").strip()
    return None


def _text(name: str, default: str) -> str:
    value = _raw(name)
    return default if value is None or value == "" else value


def _int(name: str, default: int) -> int:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as error:
        raise SettingsError(f"EMS_{name} must be an integer, got {value!r}") from error


def _bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"EMS_{name} must be true or false, got {value!r}")


@dataclass(frozen=True)
class Settings:
    """The configuration shared by every EMS process."""

    env: str = "development"
    log_level: str = "INFO"

    # MariaDB / MySQL. Each service owns the database `<db_prefix><service>`.
    db_host: str = "127.0.0.1"
    db_port: int = 3306
    db_user: str = "root"
    db_password: str = field(default="", repr=False)
    db_prefix: str = "ems_"

    # RabbitMQ: AMQP for workers and the Socket.IO message queue, STOMP for the alert bridge.
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    stomp_host: str = "127.0.0.1"
    stomp_port: int = 61613

    # Authentication.
    jwt_secret: str = field(default=DEVELOPMENT_JWT_SECRET, repr=False)
    access_token_minutes: int = 15
    refresh_token_days: int = 7
    cookie_secure: bool = False
    signup_enabled: bool = True
    login_attempts_per_minute: int = 10

    # Pipeline.
    monitor_replicas: int = 3
    replica: int = 1
    balancer_strategy: str = "round-robin"
    # Overload protection (see "Overload protection" in README.md): when readings.incoming
    # holds this many, the broker refuses (nacks) new readings and publishers back off;
    # dead.letters keeps this many, dropping its oldest first.
    readings_queue_max_length: int = 1_000_000
    dead_letters_max_length: int = 100_000

    # Local ports (the gateway's routes follow them, see Caddyfile). Servers listen on
    # `bind_host`: loopback locally, every interface inside a container.
    bind_host: str = "127.0.0.1"
    gateway_port: int = 8080
    web_port: int = 5000
    support_port: int = 5001
    notifier_port: int = 5002
    monitor_api_port: int = 5003

    # Where services reach each other (inside the back-end network); derived from
    # the ports unless set.
    web_url: str = "http://127.0.0.1:5000"
    support_url: str = "http://127.0.0.1:5001"
    monitor_api_url: str = "http://127.0.0.1:5003"
    # Where browsers reach the gateway (Socket.IO's allowed origin, links in alerts).
    public_url: str = "http://localhost:8080"

    # Optional LLM for the support bot (any OpenAI-compatible API).
    llm_base_url: str = ""
    llm_model: str = ""
    llm_api_key: str = field(default="", repr=False)
    llm_timeout_seconds: float = 10.0

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def database_name(self, service: str) -> str:
        """Return the database name owned by `service` (web, support or monitor)."""
        return f"{self.db_prefix}{service}"

    def database_url(self, service: str) -> str:
        """Return the SQLAlchemy URL of the database owned by `service`."""
        return self.server_url() + "/" + self.database_name(service) + "?charset=utf8mb4"

    def server_url(self) -> str:
        """Return the SQLAlchemy URL of the database server, without a database."""
        from urllib.parse import quote

        password = f":{quote(self.db_password, safe='')}" if self.db_password else ""
        return f"mysql+pymysql://{quote(self.db_user, safe='')}{password}@{self.db_host}:{self.db_port}"


def load_settings(**overrides) -> Settings:
    """Read the settings from the environment; keyword arguments win over it."""
    values = dict(
        env=_text("ENV", "development"),
        log_level=_text("LOG_LEVEL", "INFO"),
        db_host=_text("DB_HOST", "127.0.0.1"),
        db_port=_int("DB_PORT", 3306),
        db_user=_text("DB_USER", "root"),
        db_password=_raw("DB_PASSWORD") or "",
        db_prefix=_text("DB_PREFIX", "ems_"),
        amqp_url=_text("AMQP_URL", Settings.amqp_url),
        stomp_host=_text("STOMP_HOST", "127.0.0.1"),
        stomp_port=_int("STOMP_PORT", 61613),
        jwt_secret=_raw("JWT_SECRET") or "",
        access_token_minutes=_int("ACCESS_TOKEN_MINUTES", 15),
        refresh_token_days=_int("REFRESH_TOKEN_DAYS", 7),
        cookie_secure=_bool("COOKIE_SECURE", False),
        signup_enabled=_bool("SIGNUP_ENABLED", True),
        login_attempts_per_minute=_int("LOGIN_ATTEMPTS_PER_MINUTE", 10),
        monitor_replicas=_int("MONITOR_REPLICAS", 3),
        replica=_int("REPLICA", 1),
        balancer_strategy=_text("BALANCER_STRATEGY", "round-robin"),
        readings_queue_max_length=_int("READINGS_QUEUE_MAX_LENGTH", 1_000_000),
        dead_letters_max_length=_int("DEAD_LETTERS_MAX_LENGTH", 100_000),
        bind_host=_text("BIND_HOST", "127.0.0.1"),
        gateway_port=_int("GATEWAY_PORT", 8080),
        web_port=_int("WEB_PORT", 5000),
        support_port=_int("SUPPORT_PORT", 5001),
        notifier_port=_int("NOTIFIER_PORT", 5002),
        monitor_api_port=_int("MONITOR_API_PORT", 5003),
        llm_base_url=_text("LLM_BASE_URL", ""),
        llm_model=_text("LLM_MODEL", ""),
        llm_api_key=_raw("LLM_API_KEY") or "",
        llm_timeout_seconds=float(_text("LLM_TIMEOUT_SECONDS", "10")),
    )
    values.update(
        web_url=_text("WEB_URL", f"http://127.0.0.1:{values['web_port']}"),
        support_url=_text("SUPPORT_URL", f"http://127.0.0.1:{values['support_port']}"),
        monitor_api_url=_text("MONITOR_API_URL", f"http://127.0.0.1:{values['monitor_api_port']}"),
        public_url=_text("PUBLIC_URL", f"http://localhost:{values['gateway_port']}"),
    )
    values.update(overrides)
    if not values["jwt_secret"]:
        if values["env"] == "production":
            raise SettingsError("EMS_JWT_SECRET (or EMS_JWT_SECRET_FILE) is required in production")
        values["jwt_secret"] = DEVELOPMENT_JWT_SECRET
    if values["env"] == "production" and values["jwt_secret"] == DEVELOPMENT_JWT_SECRET:
        raise SettingsError("the development JWT secret cannot be used in production")
    if values["monitor_replicas"] < 1:
        raise SettingsError("EMS_MONITOR_REPLICAS must be at least 1")
    if values["replica"] < 1:
        raise SettingsError("EMS_REPLICA must be at least 1")
    if values["readings_queue_max_length"] < 1 or values["dead_letters_max_length"] < 1:
        raise SettingsError("EMS_READINGS_QUEUE_MAX_LENGTH and EMS_DEAD_LETTERS_MAX_LENGTH must be positive")
    if values["llm_timeout_seconds"] > 10:
        values["llm_timeout_seconds"] = 10.0
    known = {f.name for f in fields(Settings)}
    unknown = set(values) - known
    if unknown:
        raise SettingsError(f"unknown settings: {sorted(unknown)}")
    return Settings(**values)
