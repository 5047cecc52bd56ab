"""One RabbitMQ user per kind of service, allowed only the exchanges and queues it uses.

This is the one definition of who may do what on the broker. `python -m
migrations upgrade`, connected as the broker's administrator, declares the whole
topology and creates these users with their permissions through the management
API (migrations/broker.py); the services then connect as their own user
(`load_settings(service=...)`), declare nothing and so need no `configure`
right on the topology. The only things a service configures are its own
transient ones: the Socket.IO message queue's exchange and per-process queues.

Permissions are three regular expressions over exchange and queue names
(RabbitMQ's access control): `configure` to declare or delete, `write` to
publish to an exchange or bind a queue, `read` to consume from a queue or bind
from an exchange. A passive declare (the queue depths the balancer and the
monitor read) needs none. The notifier's user is also the only one whose
chat support believes: it stamps its user name in each message's `user-id`
property, which the broker refuses on a connection of any other user.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlparse, urlunparse

from common.realtime import SOCKETIO_CHANNEL
from common.topology import (
    ALERTS_EXCHANGE,
    BALANCER_MEMBERSHIP_QUEUE_PREFIX,
    CHAT_EXCHANGE,
    CONTROL_EXCHANGE,
    DEAD_LETTER_EXCHANGE,
    EVENTS_EXCHANGE,
    INGEST_EXCHANGE,
    INGEST_QUEUE_PATTERN,
    MONITOR_EVENTS_QUEUE,
    NOTIFIER_ALERTS_QUEUE,
    NOTIFIER_SESSIONS_QUEUE_PREFIX,
    PIPELINE_STATUS_QUEUE,
    READINGS_EXCHANGE,
    READINGS_QUEUE,
    SUPPORT_EVENTS_QUEUE,
    SUPPORT_INBOUND_QUEUE,
)

# The management API's port on the broker's host (the rabbitmq_management plugin).
MANAGEMENT_PORT = 15672
MANAGEMENT_TIMEOUT_SECONDS = 10
# python-socketio's KombuManager names each listener's queue `python-socketio.<uuid4>`.
SOCKETIO_QUEUE_PATTERN = r"python-socketio\.[0-9a-f-]+"
# Each notifier declares its own user-events queue, named after its instance (host-pid-random).
NOTIFIER_SESSIONS_QUEUE_PATTERN = re.escape(NOTIFIER_SESSIONS_QUEUE_PREFIX) + r"[A-Za-z0-9_.-]+"
# Each balancer hears replica heartbeats on a queue of its own (host-pid).
BALANCER_MEMBERSHIP_QUEUE_PATTERN = re.escape(BALANCER_MEMBERSHIP_QUEUE_PREFIX) + r"[A-Za-z0-9_.-]+"
# Dead letters of every consumer and publisher go to one exchange.
NOTHING = "^$"


def names(*exact: str, patterns: tuple[str, ...] = ()) -> str:
    """Return a permission regex matching exactly `exact` names and whole-name `patterns`."""
    alternatives = [re.escape(name) for name in exact] + list(patterns)
    return "^(" + "|".join(alternatives) + ")$" if alternatives else NOTHING


@dataclass(frozen=True)
class Permissions:
    """A user's rights on one virtual host: three regexes over exchange and queue names."""

    configure: str
    write: str
    read: str

    def as_json(self) -> dict:
        """Return the body of the management API's permissions resource."""
        return {"configure": self.configure, "write": self.write, "read": self.read}


# What each kind of service does on the broker, and nothing more.
PERMISSIONS: dict[str, Permissions] = {
    # The outbox relay publishes user/device events (and dead-letters an outbox row it cannot send).
    "web": Permissions(NOTHING, names(EVENTS_EXCHANGE, DEAD_LETTER_EXCHANGE), NOTHING),
    # Every reading in, one replica's ingest queue out; replica heartbeats in on a queue of its
    # own, its view of them out (pipeline.status); the queue a replica left behind is read back
    # (and deleted once empty).
    "balancer": Permissions(
        names(patterns=(INGEST_QUEUE_PATTERN, BALANCER_MEMBERSHIP_QUEUE_PATTERN)),
        names(INGEST_EXCHANGE, DEAD_LETTER_EXCHANGE, CONTROL_EXCHANGE,
              patterns=(BALANCER_MEMBERSHIP_QUEUE_PATTERN,)),
        names(READINGS_QUEUE, CONTROL_EXCHANGE,
              patterns=(INGEST_QUEUE_PATTERN, BALANCER_MEMBERSHIP_QUEUE_PATTERN)),
    ),
    # Replicas declare and consume their own ingest.<n> (a replica may join with any n), announce
    # themselves on ems.control and raise alerts; the events consumer keeps copies of users/devices;
    # the API reads the balancer's view of the replicas (pipeline.status).
    "monitor": Permissions(
        names(patterns=(INGEST_QUEUE_PATTERN,)),
        names(ALERTS_EXCHANGE, DEAD_LETTER_EXCHANGE, CONTROL_EXCHANGE, patterns=(INGEST_QUEUE_PATTERN,)),
        names(MONITOR_EVENTS_QUEUE, INGEST_EXCHANGE, PIPELINE_STATUS_QUEUE, patterns=(INGEST_QUEUE_PATTERN,)),
    ),
    # Alerts in over STOMP, chat out, user events on a queue of its own (bound to ems.events),
    # and the Socket.IO message queue it listens on.
    "notifier": Permissions(
        names(SOCKETIO_CHANNEL, patterns=(SOCKETIO_QUEUE_PATTERN, NOTIFIER_SESSIONS_QUEUE_PATTERN)),
        names(CHAT_EXCHANGE, DEAD_LETTER_EXCHANGE, SOCKETIO_CHANNEL,
              patterns=(SOCKETIO_QUEUE_PATTERN, NOTIFIER_SESSIONS_QUEUE_PATTERN)),
        names(NOTIFIER_ALERTS_QUEUE, SOCKETIO_CHANNEL, EVENTS_EXCHANGE,
              patterns=(SOCKETIO_QUEUE_PATTERN, NOTIFIER_SESSIONS_QUEUE_PATTERN)),
    ),
    # Inbound chat and its copy of user events in; emits to browsers through the Socket.IO
    # exchange (declared by kombu on use).
    "support": Permissions(
        names(SOCKETIO_CHANNEL),
        names(DEAD_LETTER_EXCHANGE, SOCKETIO_CHANNEL),
        names(SUPPORT_INBOUND_QUEUE, SUPPORT_EVENTS_QUEUE),
    ),
    "simulator": Permissions(NOTHING, names(READINGS_EXCHANGE), NOTHING),
}
SERVICES: tuple[str, ...] = tuple(PERMISSIONS)
# The service whose user alone may publish chat that support believes.
CHAT_PUBLISHER = "notifier"


class BrokerUsersError(RuntimeError):
    """The management API refused to create a user or grant its permissions."""


def user_name(prefix: str, service: str) -> str:
    """Return the broker user of `service` (e.g. `ems-notifier`)."""
    return f"{prefix}{service}"


def password_setting(service: str) -> str:
    """Return the name of the setting that holds `service`'s broker password."""
    return f"AMQP_PASSWORD_{service.upper()}"


def url_user(amqp_url: str) -> str:
    """Return the user an AMQP URL connects as (RabbitMQ's default when it names none)."""
    return unquote(urlparse(amqp_url).username or "guest")


def url_vhost(amqp_url: str) -> str:
    """Return the virtual host an AMQP URL names ("/" when it names none)."""
    path = urlparse(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def with_credentials(amqp_url: str, user: str, password: str) -> str:
    """Return `amqp_url` with its user and password replaced (hosts, ports and vhost kept)."""
    url = urlparse(amqp_url)
    # Several brokers are several hosts after the one user (common.amqp.broker_urls).
    hosts = url.netloc.rpartition("@")[2] or "127.0.0.1"
    return urlunparse(url._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{hosts}"))


def ensure_users(admin_url: str, prefix: str, passwords: dict[str, str],
                 management_port: int = MANAGEMENT_PORT) -> list[str]:
    """Create or update each service's user with its password and permissions; return the users.

    Idempotent, so `python -m migrations upgrade` runs it every time: a changed
    password (rotation) takes effect at once for new connections.
    """
    vhost = url_vhost(admin_url)
    done = []
    for service, password in passwords.items():
        user = user_name(prefix, service)
        _management(admin_url, management_port, f"users/{quote(user, safe='')}",
                    {"password": password, "tags": ""})
        _management(admin_url, management_port,
                    f"permissions/{quote(vhost, safe='')}/{quote(user, safe='')}",
                    PERMISSIONS[service].as_json())
        done.append(user)
    return done


def _management(admin_url: str, port: int, resource: str, body: dict) -> None:
    """PUT `body` to one resource of the management API as the URL's (administrator) user.

    Users live in the whole broker cluster: the first broker that answers takes the PUT.
    """
    from common.amqp import broker_urls

    url = urlparse(admin_url)
    credentials = f"{unquote(url.username or 'guest')}:{unquote(url.password or 'guest')}"
    unreachable = None
    for broker in broker_urls(admin_url):
        host = urlparse(broker).hostname or "127.0.0.1"
        request = urllib.request.Request(
            f"http://{host}:{port}/api/{resource}",
            data=json.dumps(body).encode(),
            method="PUT",
            headers={
                "Content-Type": "application/json",
                "Authorization": "Basic " + base64.b64encode(credentials.encode()).decode(),
            },
        )
        try:
            # The URL is built above and always http://: no file: or other scheme can slip in.
            with urllib.request.urlopen(request, timeout=MANAGEMENT_TIMEOUT_SECONDS):  # noqa: S310
                return
        except urllib.error.HTTPError as error:
            raise BrokerUsersError(f"management API refused PUT /api/{resource.split('/')[0]}/…: "
                                   f"{error.code} {error.reason}") from error
        except OSError as error:  # this broker is down: the next one
            unreachable = error
    raise BrokerUsersError(f"no broker's management API answered: {unreachable}")


def chat_publisher_user(settings) -> str | None:
    """Return the only user whose chat support believes, or None when every process shares one user.

    With service users off (tests, benchmarks: one administrator on a vhost of its
    own) a `user-id` proves nothing, so nothing is checked; nor without settings at all.
    """
    if settings is None or not settings.amqp_service_users:
        return None
    return user_name(settings.amqp_user_prefix, CHAT_PUBLISHER)


def forged_sender_reason(user_id: str | None, chat_publisher: str | None) -> str | None:
    """Return why a chat message with this `user-id` is not believed, or None when it is."""
    if chat_publisher is None or user_id == chat_publisher:
        return None
    return f"forged-sender: user-id {user_id or '(none)'}, only {chat_publisher} publishes chat"
