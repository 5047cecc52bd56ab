"""The broker lists of the settings (EMS_AMQP_URL with several hosts, EMS_STOMP_HOST)
are read the same whatever hosts, ports, credentials and virtual host they name:
one URL per host, each with the one user, password and virtual host, as pika reads
them; any text at all gives a list, never an exception at start-up."""

from __future__ import annotations

import dataclasses
from urllib.parse import quote

import pika
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from common.amqp import broker_urls, kombu_url
from common.broker_users import url_user, url_vhost, with_credentials

host_names = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True)
ports = st.one_of(st.none(), st.integers(min_value=1, max_value=65535))
brokers = st.lists(st.tuples(host_names, ports), min_size=1, max_size=5)
secrets_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)


# Small pure functions: 150 examples each say as much as the profile's 500, in a third of the time.
few_examples = hypothesis_settings(max_examples=150)


def netloc(host: str, port: int | None) -> str:
    return host if port is None else f"{host}:{port}"


@few_examples
@given(brokers, secrets_text, secrets_text, secrets_text)
@example([("rabbit1", 5672), ("rabbit2", None)], "ems", "p@ss:w/rd,;", "/")
def test_a_broker_list_is_one_url_per_host_with_the_same_user_password_and_vhost(
        hosts, user, password, vhost):
    url = (f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@"
           f"{','.join(netloc(host, port) for host, port in hosts)}/{quote(vhost, safe='')}")

    urls = broker_urls(url)

    assert len(urls) == len(hosts)
    for each, (host, port) in zip(urls, hosts, strict=True):
        parameters = pika.URLParameters(each)
        assert (parameters.host, parameters.port) == (host, port or 5672)
        assert parameters.virtual_host == vhost
        assert (parameters.credentials.username, parameters.credentials.password) == (user, password)
    assert kombu_url(url).split(";") == urls
    # A service's own user replaces the administrator's in front of every host.
    own = with_credentials(url, "ems-monitor", password)
    assert (url_user(own), url_vhost(own)) == ("ems-monitor", vhost)
    assert broker_urls(own) == [each.replace(f"//{quote(user, safe='')}:", "//ems-monitor:", 1)
                                for each in urls]


@few_examples
@given(st.text(max_size=200))
@example("amqp://")
@example("amqp://@/")
@example("amqp:///%2F")
@example(",,,")
def test_any_amqp_url_text_gives_a_list_of_urls(text):
    urls = broker_urls(text)
    assert urls and all(isinstance(each, str) for each in urls), "at least one broker, pika's default"


@few_examples
@given(st.lists(host_names, min_size=1, max_size=5), st.sampled_from([" ", ""]))
def test_stomp_hosts_are_every_comma_separated_host_with_the_one_port(settings, hosts, padding):
    listed = dataclasses.replace(settings, stomp_host=",".join(padding + host for host in hosts) + ",",
                                 stomp_port=61614)
    assert listed.stomp_addresses() == [(host, 61614) for host in hosts]
