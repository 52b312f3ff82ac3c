"""Which addresses the gateway may connect to on a client's behalf (image URLs).

A client that names an image URL chooses where the gateway connects, from
inside the operator's network. So only globally reachable unicast addresses
are allowed by default, and the operator may add host names or networks
(``feathergate_settings.image_url_allowed_hosts`` / ``..._networks``).

The refused IPv4 ranges are IANA's special-purpose registry (RFC 6890) minus
the few blocks it marks globally reachable, plus multicast and 240/4. For IPv6
only 2000::/3 is global unicast today, so everything outside it is refused,
and inside it the blocks that are not global (2001::/23, documentation). The
address forms that carry an IPv4 address (mapped ``::ffff:a.b.c.d``, the
deprecated compatible ``::a.b.c.d``, NAT64 ``64:ff9b::/96`` and 6to4
``2002::/16``) are judged by the IPv4 address they carry, so
``::ffff:127.0.0.1`` is loopback here as it is to a dual-stack socket.

The table is ours rather than :attr:`ipaddress.IPv4Address.is_global`, whose
ranges changed between Python patch releases.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

__all__ = ["REFUSED_V4", "REFUSED_V6", "AddressPolicy", "IPAddress", "IPNetwork", "is_public"]

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

REFUSED_V4 = tuple(
    IPv4Network(net)
    for net in (
        "0.0.0.0/8",  # "this network", 0.0.0.0 included
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata services
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, 255.255.255.255 broadcast included
    )
)

_GLOBAL_UNICAST_V6 = IPv6Network("2000::/3")
REFUSED_V6 = tuple(
    IPv6Network(net)
    for net in (
        "2001::/23",  # IETF protocol assignments: Teredo, benchmarking, ORCHID
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
    )
)
# Forms that carry an IPv4 address in their last 32 bits.
_CARRIES_V4 = (
    IPv6Network("::ffff:0:0/96"),  # IPv4-mapped
    IPv6Network("::/96"),  # IPv4-compatible (deprecated); :: and ::1 carry 0.0.0.0/8
    IPv6Network("64:ff9b::/96"),  # NAT64, RFC 6052
)
_SIX_TO_FOUR = IPv6Network("2002::/16")


def _carried_v4(address: IPv6Address) -> IPv4Address | None:
    if any(address in net for net in _CARRIES_V4):
        return IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return address.sixtofour
    return None


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is globally reachable unicast (our table, no allowlist)."""
    if isinstance(address, IPv6Address):
        carried = _carried_v4(address)
        if carried is not None:
            return is_public(carried)
        if address not in _GLOBAL_UNICAST_V6:
            return False
        return not any(address in net for net in REFUSED_V6)
    return not any(address in net for net in REFUSED_V4)


def _host_key(host: str) -> str:
    return host.lower().rstrip(".")


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Public addresses, plus what the operator allowed by name or network."""

    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(
        cls, hosts: tuple[str, ...], networks: tuple[IPNetwork, ...]
    ) -> AddressPolicy:
        return cls(frozenset(_host_key(h) for h in hosts), networks)

    def allows_host(self, host: str) -> bool:
        """An allowed host name may resolve to anything (exact, case-insensitive)."""
        return _host_key(host) in self.allowed_hosts

    def allows_address(self, address: IPAddress) -> bool:
        if any(address in net for net in self.allowed_networks):
            return True
        if isinstance(address, IPv6Address):
            carried = _carried_v4(address)
            if carried is not None:
                return self.allows_address(carried)
        return is_public(address)
