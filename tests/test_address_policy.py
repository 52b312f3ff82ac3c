"""The address policy for image URLs (pure), and the two settings that widen it."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feathergate.address_policy import (
    REFUSED_V4,
    REFUSED_V6,
    AddressPolicy,
    IPAddress,
    is_public,
)
from feathergate.config import parse_config
from feathergate.errors import ConfigError

DEFAULT = AddressPolicy()

REFUSED = [
    "0.0.0.0",  # unspecified
    "0.1.2.3",  # "this network"
    "127.0.0.1",
    "127.255.255.254",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # CGNAT
    "100.127.255.255",
    "192.0.0.8",
    "192.0.2.1",
    "198.18.0.1",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",  # broadcast
    "::",  # unspecified
    "::1",
    "fe80::1",  # link-local
    "fe80::1%eth0",
    "febf::1",
    "fec0::1",  # site-local (deprecated)
    "fc00::1",  # unique-local
    "fd12:3456:789a::1",
    "ff02::1",  # multicast
    "100::1",  # discard-only
    "64:ff9b:1::1",  # local-use NAT64
    "2001:db8::1",  # documentation
    "2001::1",  # Teredo
    "3fff::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:7f00:1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible
    "::ffff:0.0.0.0",
    "64:ff9b::127.0.0.1",  # NAT64 of loopback
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:7f00:1::1",  # 6to4 carrying 127.0.0.1
    "2002:c0a8:101::",  # 6to4 carrying 192.168.1.1
    "4000::1",  # outside 2000::/3: unassigned
]
PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above
    "172.15.255.255",
    "172.32.0.0",
    "2606:4700:4700::1111",
    "2a00:1450:4001::200e",
    "::ffff:8.8.8.8",  # mapped public
    "64:ff9b::8.8.8.8",  # NAT64 of a public address
    "2002:808:808::1",  # 6to4 carrying 8.8.8.8
]


@pytest.mark.parametrize("address", REFUSED)
def test_refused_by_default(address: str) -> None:
    assert not is_public(ip_address(address))
    assert not DEFAULT.allows_address(ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_allowed_by_default(address: str) -> None:
    assert is_public(ip_address(address))
    assert DEFAULT.allows_address(ip_address(address))


def test_allowlist_networks_and_hosts() -> None:
    policy = AddressPolicy.from_settings(
        ("Images.Internal.", "cdn.corp"), (ip_network("10.20.0.0/16"), ip_network("fd00::/8"))
    )
    assert policy.allows_address(ip_address("10.20.3.4"))
    assert policy.allows_address(ip_address("::ffff:10.20.3.4"))  # the same socket destination
    assert policy.allows_address(ip_address("fd00::5"))
    assert not policy.allows_address(ip_address("10.21.0.1"))
    assert not policy.allows_address(ip_address("127.0.0.1"))
    assert not policy.allows_address(ip_address("fe80::1"))
    assert policy.allows_host("images.internal")
    assert policy.allows_host("IMAGES.internal.")
    assert policy.allows_host("cdn.corp")
    assert not policy.allows_host("evil.images.internal")  # exact names, no suffixes
    assert not policy.allows_host("internal")
    assert not DEFAULT.allows_host("localhost")


# -- properties --------------------------------------------------------------------------

v4 = st.integers(0, 2**32 - 1).map(IPv4Address)
v6 = st.integers(0, 2**128 - 1).map(IPv6Address)


@st.composite
def inside(draw: st.DrawFn, networks: tuple[Any, ...]) -> IPAddress:
    net = draw(st.sampled_from(networks))
    offset = draw(st.integers(0, net.num_addresses - 1))
    address: IPAddress = net.network_address + offset
    return address


@given(v4)
def test_v4_forms_in_v6_are_judged_by_the_v4_address(address: IPv4Address) -> None:
    expected = is_public(address)
    value = int(address)
    for form in (0xFFFF << 32 | value, int(IPv6Address("64:ff9b::")) | value):
        assert is_public(IPv6Address(form)) == expected
    assert is_public(IPv6Address(0x2002 << 112 | value << 80 | 1)) == expected


@given(inside(REFUSED_V4))
def test_every_address_of_a_refused_v4_range_is_refused(address: IPAddress) -> None:
    assert not DEFAULT.allows_address(address)
    assert AddressPolicy(allowed_networks=(ip_network(f"{address}/32"),)).allows_address(address)


@given(inside(REFUSED_V6))
def test_every_address_of_a_refused_v6_range_is_refused(address: IPAddress) -> None:
    assert not DEFAULT.allows_address(address)


@given(v4)
def test_what_we_allow_python_calls_global(address: IPv4Address) -> None:
    # Our table refuses a superset of Python's non-global ranges (multicast included).
    if is_public(address):
        assert address.is_global
        assert not address.is_multicast


@given(v6)
def test_allowed_v6_is_global_unicast_or_carries_a_public_v4(address: IPv6Address) -> None:
    if is_public(address):
        carried = IPv4Address(int(address) & 0xFFFFFFFF)
        in_global_unicast = address in IPv6Network("2000::/3")
        assert in_global_unicast or is_public(carried)
        assert not address.is_link_local
        assert not address.is_loopback
        assert not address.is_multicast
        assert not address.is_site_local


@given(st.one_of(v4, v6))
def test_an_allowlisted_network_allows_its_own_addresses(address: IPAddress) -> None:
    prefix = 24 if isinstance(address, IPv4Address) else 64
    network = ip_network(f"{address}/{prefix}", strict=False)
    assert AddressPolicy(allowed_networks=(network,)).allows_address(address)


# -- the settings ------------------------------------------------------------------------


def _server(settings: dict[str, Any]) -> Any:
    return parse_config({"feathergate_settings": settings}, {}).server


def test_settings_default_to_nothing_allowed() -> None:
    server = _server({})
    assert server.image_url_allowed_hosts == ()
    assert server.image_url_allowed_networks == ()


def test_settings_parse_hosts_and_networks() -> None:
    settings = {
        "image_url_allowed_hosts": ["Images.Internal", "cdn.corp."],
        "image_url_allowed_networks": ["10.0.0.0/8", "fd00::/8", "192.168.1.7"],
    }
    config = parse_config({"feathergate_settings": settings}, {})
    assert config.warnings == ()  # keys FeatherGate reads
    server = config.server
    assert server.image_url_allowed_hosts == ("Images.Internal", "cdn.corp.")
    assert server.image_url_allowed_networks == (
        ip_network("10.0.0.0/8"),
        ip_network("fd00::/8"),
        ip_network("192.168.1.7/32"),
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"image_url_allowed_networks": ["10.0.0.0/8", "10.0.0.1/8"]},
            "feathergate_settings.image_url_allowed_networks[1]: not a network: "
            "10.0.0.1/8 has host bits set",
        ),
        (
            {"image_url_allowed_networks": ["localhost"]},
            "feathergate_settings.image_url_allowed_networks[0]: not a network",
        ),
        (
            {"image_url_allowed_networks": [10]},
            "feathergate_settings.image_url_allowed_networks[0]: expected a network",
        ),
        (
            {"image_url_allowed_networks": "10.0.0.0/8"},
            "feathergate_settings.image_url_allowed_networks: expected a list, got str",
        ),
        (
            {"image_url_allowed_hosts": ["ok.example", "https://cdn.example.com"]},
            "feathergate_settings.image_url_allowed_hosts[1]: expected a bare host name",
        ),
        (
            {"image_url_allowed_hosts": ["cdn.example.com:8443"]},
            "feathergate_settings.image_url_allowed_hosts[0]: expected a bare host name",
        ),
        (
            {"image_url_allowed_hosts": [""]},
            "feathergate_settings.image_url_allowed_hosts[0]: expected a bare host name",
        ),
        (
            {"image_url_allowed_hosts": {"cdn.example.com": True}},
            "feathergate_settings.image_url_allowed_hosts: expected a list, got dict",
        ),
    ],
)
def test_bad_settings_name_their_key_path(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _server(settings)
    assert str(info.value).startswith(message)
