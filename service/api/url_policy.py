"""Which image URLs the service may fetch: the `image_url_allow` list, and the addresses behind them.

Entries are host names ("images.example.com"), IP addresses or networks ("203.0.113.7",
"10.1.0.0/16"), or URL prefixes ("https://cdn.example.com/public/"). A URL passes when its host is
listed, its address is in a listed network, or it starts with a listed prefix (same scheme, host
and port; the path starts with the prefix's path).

Then every address its host resolves to must be public: private, loopback, link-local (which holds
the cloud metadata address 169.254.169.254), shared, reserved, unspecified and multicast addresses
are refused unless an entry names the address or its network (an IP entry, or a URL prefix whose
host is the address). So "localhost" as a host entry alone does not open 127.0.0.1; "127.0.0.1"
does. The caller connects to the address checked here, never resolving the name again (no DNS
rebinding between the check and the connection).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import httpx

from service.errors import UrlFetchFailed, UrlRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Target:
    """One checked hop: connect to `address`, send Host (and SNI for https) as `url` names it."""

    url: httpx.URL  # as the client named it (normalised: lowercase host, no dot segments)
    address: IPAddress

    @property
    def connect_url(self) -> httpx.URL:
        return self.url.copy_with(host=str(self.address))

    @property
    def host_header(self) -> str:
        return self.url.netloc.decode("ascii")


@dataclass(frozen=True)
class UrlPolicy:
    hosts: frozenset[str]
    networks: tuple[IPNetwork, ...]
    prefixes: tuple[httpx.URL, ...]

    @classmethod
    def parse(cls, entries: list[str]) -> UrlPolicy:
        hosts, networks, prefixes = set(), [], []
        for entry in (e.strip() for e in entries):
            if "://" in entry:
                prefixes.append(httpx.URL(entry))
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks), tuple(prefixes))

    @property
    def _prefix_addresses(self) -> set[IPAddress]:
        """Addresses that URL prefixes name literally (http://127.0.0.1:9000/ names 127.0.0.1)."""
        return {a for a in (_ip_literal(prefix.host) for prefix in self.prefixes) if a is not None}

    @property
    def enabled(self) -> bool:
        return bool(self.hosts or self.networks or self.prefixes)

    async def check(self, raw: str) -> Target:
        """The URL parsed, allowed and resolved to one checked address; UrlRefused names the rule."""
        url = _parse(raw)
        if not self._listed(url):
            raise UrlRefused(
                f"image URL {_shown(raw)}: host {url.host!r} is not in image_url_allow "
                f"(a host, address, network or URL prefix must allow it)"
            )
        addresses = await _resolve(url)
        for address in addresses:
            rule = self._address_rule(address)
            if rule is not None:
                raise UrlRefused(f"image URL {_shown(raw)}: {url.host!r} resolves to {address}, {rule}")
        return Target(url, addresses[0])

    def _listed(self, url: httpx.URL) -> bool:
        if url.host in self.hosts or any(_starts_with(url, prefix) for prefix in self.prefixes):
            return True
        literal = _ip_literal(url.host)
        return literal is not None and any(literal in network for network in self.networks)

    def _address_rule(self, address: IPAddress) -> str | None:
        """Why this address may not be connected to, or None."""
        mapped = getattr(address, "ipv4_mapped", None)
        checked = mapped if mapped is not None else address
        if any(checked in network for network in self.networks) or checked in self._prefix_addresses:
            return None
        if checked.is_global and not checked.is_multicast:
            return None
        kind = next(
            (
                name
                for name in ("loopback", "link_local", "private", "multicast")
                if getattr(checked, f"is_{name}")
            ),
            "not public",
        ).replace("_", "-")
        return (
            f"a {kind} address; such addresses are refused unless image_url_allow names the "
            f"address or its network (e.g. {checked})"
        )


def _parse(raw: str) -> httpx.URL:
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, ValueError) as error:
        raise UrlRefused(f"image URL {_shown(raw)} is not a valid URL ({error})") from error
    if url.scheme not in SCHEMES or not url.host:
        raise UrlRefused(f"image URL {_shown(raw)}: only http:// and https:// URLs with a host are fetched")
    if url.userinfo:
        raise UrlRefused(f"image URL {_shown(raw)}: credentials in URLs are refused")
    return url


def _starts_with(url: httpx.URL, prefix: httpx.URL) -> bool:
    same_origin = (url.scheme, url.host, _port(url)) == (prefix.scheme, prefix.host, _port(prefix))
    return same_origin and url.path.startswith(prefix.path or "/")


def _port(url: httpx.URL) -> int:
    return url.port or DEFAULT_PORTS.get(url.scheme, 0)


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def _resolve(url: httpx.URL) -> list[IPAddress]:
    literal = _ip_literal(url.host)
    if literal is not None:
        return [literal]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(url.host, _port(url), type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise UrlFetchFailed(f"image URL host {url.host!r} does not resolve ({error})") from error
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
    if not addresses:
        raise UrlFetchFailed(f"image URL host {url.host!r} has no address")
    return addresses


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 120 else raw[:117] + "...")
