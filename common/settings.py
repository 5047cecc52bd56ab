"""Every EMS setting, read from `EMS_*` environment variables in this one place.

Local defaults are safe for a developer machine. Secrets have no default in any
environment: a process without a JWT secret refuses to start. Each setting is
read, first found wins, from `EMS_<NAME>`, from the file `EMS_<NAME>_FILE` (how
Docker Swarm hands secrets over), then from the secrets file: `EMS_SECRETS_FILE`,
or `.ems-secrets` in the repository root when it exists, which `make run` and
`make test` fill with random secrets on first use (common/security.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
# Where `make run` keeps the secrets it generated (git-ignored, readable by its owner only).
DEFAULT_SECRETS_FILE = REPOSITORY_ROOT / ".ems-secrets"
# HS256 keys shorter than the hash (32 bytes) are guessable offline from one token.
MIN_JWT_SECRET_LENGTH = 32


class SettingsError(RuntimeError):
    """A setting is missing or malformed."""


def secrets_file_path(env: str) -> Path | None:
    """Return the secrets file every process reads, or None when there is none.

    Production reads only a file it is told about: a file that happens to lie in
    the checkout must not stand in for the deployment's own secrets.
    """
    named = os.environ.get("EMS_SECRETS_FILE")
    if named:
        path = Path(named)
        if not path.is_file():
            raise SettingsError(f"EMS_SECRETS_FILE names {named}, which is not a file")
        return path
    if env == "production":
        return None
    return DEFAULT_SECRETS_FILE if DEFAULT_SECRETS_FILE.is_file() else None


def read_secrets_file(path: Path) -> dict[str, str]:
    """Return the `EMS_NAME=value` lines of a secrets file (blank lines and # comments skipped)."""
    if path.stat().st_mode & 0o077:
        raise SettingsError(f"{path} is readable by other users: chmod 600 {path}")
    values = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, equals, value = line.partition("=")
        if not equals or not name.startswith("EMS_"):
            raise SettingsError(f"{path} line {number}: expected EMS_NAME=value")
        values[name.strip()] = value.strip()
    return values


def _raw(name: str, from_file: dict[str, str] | None = None) -> str | None:
    """Return EMS_<name>, else the contents of the file EMS_<name>_FILE, else the secrets file's value."""
    value = os.environ.get(f"EMS_{name}")
    if value is not None:
        return value
    path = os.environ.get(f"EMS_{name}_FILE")
    if path:
        return Path(path).read_text(encoding="utf-8").strip()
    return (from_file or {}).get(f"EMS_{name}")


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
    # True once a deployment was initialised: its databases must hold EMS's schema, and
    # neither the migrations nor a service may take an empty database for a new one.
    expect_existing_data: bool = False

    # RabbitMQ: AMQP for workers and the Socket.IO message queue, STOMP for the alert bridge.
    # The URL this process connects with: its service's own user (common/broker_users.py)
    # when it loaded the settings as a service, else EMS_AMQP_URL as given (the administrator).
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    # The service whose broker user `amqp_url` names; "" when it is EMS_AMQP_URL's own user.
    amqp_service: str = ""
    # Off, every process uses EMS_AMQP_URL as is (the tests: an administrator on their own vhost).
    amqp_service_users: bool = True
    amqp_user_prefix: str = "ems-"
    # The broker passwords this process knows: every service's for migrations, else only its own.
    amqp_passwords: dict = field(default_factory=dict, repr=False, compare=False)
    amqp_management_port: int = 15672
    # A worker that sends nothing for about twice this long is cut off by the broker.
    amqp_heartbeat_seconds: int = 30
    # One host, or a cluster's brokers comma-separated (`rabbit1,rabbit2,rabbit3`), tried in turn.
    stomp_host: str = "127.0.0.1"
    stomp_port: int = 61613

    # Authentication.
    # No default: a known key would let anyone forge an administrator's token.
    jwt_secret: str = field(default="", repr=False)
    access_token_minutes: int = 15
    refresh_token_days: int = 7
    cookie_secure: bool = False  # true by default in production
    signup_enabled: bool = True
    # Failed logins per e-mail from one address, and from one address over every e-mail.
    login_attempts_per_minute: int = 10
    login_attempts_per_address_per_minute: int = 30
    signups_per_address_per_hour: int = 10
    # Proxies in front of the HTTP services whose X-Forwarded-For is trusted (the gateway: 1;
    # 0 when a service is reachable directly, so a client cannot choose its own address).
    trusted_proxy_hops: int = 1

    # Abuse budgets of one user, whatever the number of their sockets or tabs.
    chat_event_burst: int = 20
    chat_events_per_second: float = 5.0
    sockets_per_user: int = 10
    llm_calls_per_user_per_hour: int = 20

    # Pipeline.
    monitor_replicas: int = 3
    replica: int = 1
    balancer_strategy: str = "round-robin"
    # Readings stamped further ahead of the receiving process's clock are refused (clock drift).
    max_clock_skew_seconds: int = 300
    # Raw readings are kept this many days (hourly totals and alerts forever); older ones
    # are refused as too old, since their duplicate check may be gone (monitor/maintenance.py).
    raw_retention_days: int = 90
    # A running hour's total is projected only after this much of it and this many
    # readings (monitor/warnings.py: the early-warning rule).
    warning_min_minutes: float = 10.0
    warning_min_readings: int = 3
    # Overload protection (see "Overload protection" in README.md): when readings.incoming
    # holds this many, the broker refuses (nacks) new readings and publishers back off;
    # dead.letters keeps this many, dropping its oldest first.
    readings_queue_max_length: int = 1_000_000
    dead_letters_max_length: int = 100_000
    # `quorum` replicates every durable queue over the broker cluster (common/topology.py).
    queue_type: str = "classic"

    # Local ports (the gateway's routes follow them, see Caddyfile). Servers listen on
    # `bind_host`: loopback locally, every interface inside a container.
    bind_host: str = "127.0.0.1"
    gateway_port: int = 8080
    web_port: int = 5000
    support_port: int = 5001
    notifier_port: int = 5002
    monitor_api_port: int = 5003
    # Prometheus metrics and health (/metrics, /healthz, /readyz) of each process: its own port,
    # EMS_METRICS_PORT, else the base plus the process's offset (common/metrics.py); 0 turns it off.
    metrics_base_port: int = 9200
    metrics_port: int = 0
    # A consumer holding deliveries with nothing acked, or a loop not turning, this long is unhealthy.
    stuck_seconds: int = 120

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

    def stomp_addresses(self) -> list[tuple[str, int]]:
        """Return the (host, port) of every broker's STOMP listener, in order."""
        return [(host.strip(), self.stomp_port) for host in self.stomp_host.split(",") if host.strip()]

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


def load_settings(service: str | None = None, **overrides) -> Settings:
    """Read the settings from the environment; keyword arguments win over it.

    A process that connects to the broker as one kind of service (web, balancer,
    monitor, notifier, support, simulator) names it, and connects as that
    service's own user; without a name it is the administrator (migrations).
    """
    env = _text("ENV", "development")
    path = secrets_file_path(env)
    from_file = read_secrets_file(path) if path else {}
    values = dict(
        env=env,
        log_level=_text("LOG_LEVEL", "INFO"),
        db_host=_text("DB_HOST", "127.0.0.1"),
        db_port=_int("DB_PORT", 3306),
        db_user=_text("DB_USER", "root"),
        db_password=_raw("DB_PASSWORD", from_file) or "",
        db_prefix=_text("DB_PREFIX", "ems_"),
        expect_existing_data=_bool("EXPECT_EXISTING_DATA", False),
        amqp_url=_raw("AMQP_URL", from_file) or Settings.amqp_url,  # holds the broker password
        amqp_heartbeat_seconds=_int("AMQP_HEARTBEAT_SECONDS", 30),
        amqp_service_users=_bool("AMQP_SERVICE_USERS", True),
        amqp_user_prefix=_text("AMQP_USER_PREFIX", "ems-"),
        amqp_management_port=_int("AMQP_MANAGEMENT_PORT", 15672),
        stomp_host=_text("STOMP_HOST", "127.0.0.1"),
        stomp_port=_int("STOMP_PORT", 61613),
        jwt_secret=_raw("JWT_SECRET", from_file) or "",
        access_token_minutes=_int("ACCESS_TOKEN_MINUTES", 15),
        refresh_token_days=_int("REFRESH_TOKEN_DAYS", 7),
        cookie_secure=_bool("COOKIE_SECURE", env == "production"),
        signup_enabled=_bool("SIGNUP_ENABLED", True),
        login_attempts_per_minute=_int("LOGIN_ATTEMPTS_PER_MINUTE", 10),
        login_attempts_per_address_per_minute=_int("LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE", 30),
        signups_per_address_per_hour=_int("SIGNUPS_PER_ADDRESS_PER_HOUR", 10),
        trusted_proxy_hops=_int("TRUSTED_PROXY_HOPS", 1),
        chat_event_burst=_int("CHAT_EVENT_BURST", 20),
        chat_events_per_second=float(_text("CHAT_EVENTS_PER_SECOND", "5")),
        sockets_per_user=_int("SOCKETS_PER_USER", 10),
        llm_calls_per_user_per_hour=_int("LLM_CALLS_PER_USER_PER_HOUR", 20),
        monitor_replicas=_int("MONITOR_REPLICAS", 3),
        replica=_int("REPLICA", 1),
        balancer_strategy=_text("BALANCER_STRATEGY", "round-robin"),
        max_clock_skew_seconds=_int("MAX_CLOCK_SKEW_SECONDS", 300),
        raw_retention_days=_int("RAW_RETENTION_DAYS", 90),
        warning_min_minutes=float(_text("WARNING_MIN_MINUTES", "10")),
        warning_min_readings=_int("WARNING_MIN_READINGS", 3),
        readings_queue_max_length=_int("READINGS_QUEUE_MAX_LENGTH", 1_000_000),
        dead_letters_max_length=_int("DEAD_LETTERS_MAX_LENGTH", 100_000),
        queue_type=_text("QUEUE_TYPE", Settings.queue_type),
        bind_host=_text("BIND_HOST", "127.0.0.1"),
        gateway_port=_int("GATEWAY_PORT", 8080),
        web_port=_int("WEB_PORT", 5000),
        support_port=_int("SUPPORT_PORT", 5001),
        notifier_port=_int("NOTIFIER_PORT", 5002),
        monitor_api_port=_int("MONITOR_API_PORT", 5003),
        metrics_base_port=_int("METRICS_BASE_PORT", 9200),
        metrics_port=_int("METRICS_PORT", 0),
        stuck_seconds=_int("STUCK_SECONDS", 120),
        llm_base_url=_text("LLM_BASE_URL", ""),
        llm_model=_text("LLM_MODEL", ""),
        llm_api_key=_raw("LLM_API_KEY", from_file) or "",
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
        raise SettingsError(
            "no JWT secret: set EMS_JWT_SECRET or EMS_JWT_SECRET_FILE, or run `make run` "
            f"(scripts/bootstrap.sh), which generates {DEFAULT_SECRETS_FILE.name} with a random one")
    if len(values["jwt_secret"]) < MIN_JWT_SECRET_LENGTH:
        raise SettingsError(f"the JWT secret must have at least {MIN_JWT_SECRET_LENGTH} characters")
    broker_user = _broker_user(service, values, from_file)
    values.update({name: value for name, value in broker_user.items() if name not in overrides})
    if values["monitor_replicas"] < 1:
        raise SettingsError("EMS_MONITOR_REPLICAS must be at least 1")
    if values["replica"] < 1:
        raise SettingsError("EMS_REPLICA must be at least 1")
    if values["max_clock_skew_seconds"] < 0:
        raise SettingsError("EMS_MAX_CLOCK_SKEW_SECONDS must not be negative")
    if values["raw_retention_days"] < 1:
        raise SettingsError("EMS_RAW_RETENTION_DAYS must be at least 1")
    if not 0 <= values["warning_min_minutes"] < 60 or values["warning_min_readings"] < 1:
        raise SettingsError("EMS_WARNING_MIN_MINUTES must be 0..59 and EMS_WARNING_MIN_READINGS at least 1")
    if values["readings_queue_max_length"] < 1 or values["dead_letters_max_length"] < 1:
        raise SettingsError("EMS_READINGS_QUEUE_MAX_LENGTH and EMS_DEAD_LETTERS_MAX_LENGTH must be positive")
    if values["queue_type"] not in ("classic", "quorum"):
        raise SettingsError(f"EMS_QUEUE_TYPE must be classic or quorum, got {values['queue_type']!r}")
    if values["llm_timeout_seconds"] > 10:
        values["llm_timeout_seconds"] = 10.0
    known = {f.name for f in fields(Settings)}
    unknown = set(values) - known
    if unknown:
        raise SettingsError(f"unknown settings: {sorted(unknown)}")
    return Settings(**values)


def _broker_user(service: str | None, values: dict, from_file: dict[str, str]) -> dict:
    """Return the broker settings of `service`: its own user's URL and password.

    Without a service (migrations), every service's password that is configured,
    so that the users can be created. A service whose password is missing refuses
    to start rather than fall back to a user with more rights.
    """
    from common.broker_users import SERVICES, password_setting, user_name, with_credentials

    if not values["amqp_service_users"]:
        return {"amqp_passwords": {}}
    if service is None:
        passwords = {name: _given_password(password_setting(name), from_file) for name in SERVICES}
        return {"amqp_passwords": {name: value for name, value in passwords.items() if value}}
    if service not in SERVICES:
        raise SettingsError(f"no broker user for a service named {service!r}: one of {', '.join(SERVICES)}")
    password = _raw(password_setting(service), from_file)
    if not password:
        raise SettingsError(
            f"no broker password for {service}: set EMS_{password_setting(service)} or its _FILE, or run "
            f"`make run` (scripts/bootstrap.sh), which generates it in {DEFAULT_SECRETS_FILE.name}")
    user = user_name(values["amqp_user_prefix"], service)
    return {"amqp_url": with_credentials(values["amqp_url"], user, password), "amqp_service": service,
            "amqp_passwords": {service: password}}


def _given_password(name: str, from_file: dict[str, str]) -> str | None:
    """Return a broker password, or None when its file is not there.

    In Swarm every task is told where each service's password would be, but
    holds only its own service's (swarm/stack.yml).
    """
    try:
        return _raw(name, from_file)
    except FileNotFoundError:
        return None
