"""How the support consumer gets through a batch: the attempts it makes, what it
acks, what it dead-letters and when it gives everything back (no broker, no database)."""

from __future__ import annotations

import pika
import pymysql
import pytest
from sqlalchemy import exc

from common.topology import DEAD_LETTER_REASON_HEADER
from support.consumer import Delivery, SupportConsumer


def database_error(error: pymysql.err.MySQLError) -> exc.DBAPIError:
    """Return a PyMySQL error as SQLAlchemy raises it from a statement."""
    return exc.DBAPIError.instance("INSERT …", {}, error, pymysql.err.Error)


REFUSED = database_error(pymysql.err.DataError(1406, "Data too long for column 'body' at row 1"))
DUPLICATE = database_error(pymysql.err.IntegrityError(1062, "Duplicate entry '7-a' for key 'uq'"))
DEADLOCK = database_error(pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock"))
LOST = database_error(pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"))


class FakeChannel:
    """A channel that records acks and dead letters."""

    is_open = True

    def __init__(self):
        self.acked: list[int] = []
        self.dead_letters: list[tuple[bytes, str]] = []

    def basic_ack(self, tag, multiple=False):
        assert multiple
        self.acked.append(tag)

    def basic_publish(self, exchange, routing_key, body, properties, mandatory):
        self.dead_letters.append((body, properties.headers[DEAD_LETTER_REASON_HEADER]))


class FakeConnection:
    """A connection whose thread runs callbacks at once, and closes the channel when asked to give back."""

    is_closed = False

    def __init__(self):
        self.consumer: SupportConsumer | None = None
        self.given_back = 0

    def add_callback_threadsafe(self, callback):
        callback()
        if self.consumer.giving_back:  # what the connection's thread does in `_consume`
            self.consumer.giving_back = False
            self.given_back += 1
            self.consumer.given_back.set()


class FakeService:
    """Process batches as `outcome(bodies, look_up_sends)` says; record every call."""

    def __init__(self, outcome):
        self.outcome = outcome
        self.calls: list[tuple[list[bytes], bool]] = []

    def process(self, messages, look_up_sends=True):
        bodies = [body for _, body in messages]
        self.calls.append((bodies, look_up_sends))
        return self.outcome(bodies, look_up_sends)


def stored(bodies, look_up_sends):
    return [None] * len(bodies)


def consumer_of(service: FakeService) -> tuple[SupportConsumer, FakeConnection, FakeChannel]:
    """Return a consumer of the fake service with its fake connection and channel."""
    consumer, connection = SupportConsumer(None, service), FakeConnection()
    consumer.database_delay = 0  # no back-off pauses in unit tests
    connection.consumer = consumer
    return consumer, connection, FakeChannel()


def deliveries(connection, channel, bodies: list[bytes], first_tag: int = 1) -> list[Delivery]:
    return [Delivery(connection, channel, tag, "inbound.message", body, pika.BasicProperties())
            for tag, body in enumerate(bodies, start=first_tag)]


@pytest.fixture
def consume():
    """Return a function that processes bodies as one batch with a fake service; return the fakes."""
    def run(bodies: list[bytes], outcome=stored):
        service = FakeService(outcome)
        consumer, connection, channel = consumer_of(service)
        consumer._process(deliveries(connection, channel, bodies))
        return service, connection, channel
    return run


def test_a_batch_that_works_takes_one_attempt_and_one_ack(consume):
    service, connection, channel = consume([b"a", b"b", b"c"])
    assert service.calls == [([b"a", b"b", b"c"], False)]
    assert channel.acked == [3]
    assert channel.dead_letters == [] and connection.given_back == 0


def test_a_send_stored_before_runs_the_batch_again_with_the_look_up(consume):
    def outcome(bodies, look_up_sends):
        if not look_up_sends:
            raise DUPLICATE
        return [None] * len(bodies)

    service, _, channel = consume([b"a", b"b"], outcome)
    assert service.calls == [([b"a", b"b"], False), ([b"a", b"b"], True)]
    assert channel.acked == [2]


def test_a_batch_the_database_rolled_back_runs_again_at_once(consume):
    failures = [DEADLOCK]

    def outcome(bodies, look_up_sends):
        if failures:
            raise failures.pop()
        return [None] * len(bodies)

    service, connection, channel = consume([b"a", b"b"], outcome)
    assert service.calls == [([b"a", b"b"], False)] * 2
    assert channel.acked == [2] and connection.given_back == 0


def test_a_message_the_database_refuses_is_dead_lettered_alone_and_the_others_stored(consume):
    def outcome(bodies, look_up_sends):
        if b"bad" in bodies:
            raise REFUSED
        return [None] * len(bodies)

    service, connection, channel = consume([b"a", b"bad", b"c"], outcome)
    # All at once, then (not a duplicate: no use looking sends up) one by one.
    assert service.calls == [([b"a", b"bad", b"c"], False), ([b"a"], True), ([b"bad"], True), ([b"c"], True)]
    assert channel.dead_letters == [(b"bad", "database-refused: 1406 " + REFUSED.orig.args[1])]
    assert channel.acked == [1, 2, 3] and connection.given_back == 0


def test_a_message_that_breaks_the_code_is_dead_lettered_with_the_error(consume):
    def outcome(bodies, look_up_sends):
        if b"boom" in bodies:
            raise RecursionError("maximum recursion depth exceeded")
        return [None] * len(bodies)

    _, _, channel = consume([b"a", b"boom"], outcome)
    assert channel.dead_letters == [(b"boom", "internal-error: RecursionError")]
    assert channel.acked == [1, 2]


def test_an_outage_gives_back_the_batch_without_settling_any_of_it(consume):
    def outcome(bodies, look_up_sends):
        raise LOST

    service, connection, channel = consume([b"a", b"b"], outcome)
    assert len(service.calls) == 1
    assert connection.given_back == 1
    assert channel.acked == [] and channel.dead_letters == []


def test_an_outage_one_by_one_settles_what_went_before_and_gives_back_the_rest(consume):
    def outcome(bodies, look_up_sends):
        if b"bad" in bodies:
            raise REFUSED
        if b"late" in bodies and look_up_sends:  # the database goes away meanwhile
            raise LOST
        return [None] * len(bodies)

    service, connection, channel = consume([b"a", b"bad", b"late", b"d"], outcome)
    assert [bodies for bodies, _ in service.calls][1:] == [[b"a"], [b"bad"], [b"late"]]
    assert channel.acked == [1, 2]
    assert [body for body, _ in channel.dead_letters] == [b"bad"]
    assert connection.given_back == 1  # "late" and "d" go back to the broker, in order


def test_rejections_are_dead_lettered_with_their_reasons_and_the_batch_acked(consume):
    def outcome(bodies, look_up_sends):
        return ["body is empty" if body == b"empty" else None for body in bodies]

    _, _, channel = consume([b"a", b"empty", b"c"], outcome)
    assert channel.dead_letters == [(b"empty", "body is empty")]
    assert channel.acked == [3]


def test_a_failure_of_the_consumer_itself_dead_letters_its_batch_and_the_worker_goes_on(monkeypatch):
    def outcome(bodies, look_up_sends):
        if b"boom" in bodies:
            raise RecursionError("maximum recursion depth exceeded")
        return [None] * len(bodies)

    consumer, connection, channel = consumer_of(FakeService(outcome))
    monkeypatch.setattr(consumer, "_failure_reason", lambda delivery, error: 1 / 0)  # a bug of its own
    for delivery in deliveries(connection, channel, [b"a", b"boom"]):
        consumer.work.put(delivery)
    consumer.work.put(None)
    consumer._work()  # returns at the end of the queue: the worker did not die
    # "a" was stored and acked before the failure: only "boom" is dead-lettered.
    assert channel.dead_letters == [(b"boom", "internal-error: ZeroDivisionError")]
    assert channel.acked == [1, 2]

    for delivery in deliveries(connection, channel, [b"c"], first_tag=3):
        consumer.work.put(delivery)
    consumer.work.put(None)
    consumer._work()
    assert channel.acked == [1, 2, 3]
