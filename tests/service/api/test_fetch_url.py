"""Image URLs: the policy (allowlist, private addresses, redirects) and the fetch (size, time), against
an HTTP server of the tests' own on loopback; then through /classify on a real server."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from service.api.fetch_url import fetch_image, is_url
from service.api.url_policy import UrlPolicy
from service.errors import ServiceError, TooLarge, UrlFetchFailed, UrlRefused
from service.settings import Settings
from tests.service.api.url_server import ImageServer, image_server
from tests.service.conftest import image_bytes, running, server_settings

IMAGE = image_bytes(7)


@pytest.fixture(scope="module")
def origin() -> Iterator[ImageServer]:
    with image_server(IMAGE) as server:
        yield server


def fetch(url: str, **settings: Any) -> bytes:
    values: dict[str, Any] = {"image_url_allow": ["127.0.0.1"], **settings}
    return asyncio.run(fetch_image(url, Settings(**values)))


def refusal(url: str, **settings: Any) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        fetch(url, **settings)
    return caught.value


def test_an_allowed_url_is_fetched_with_the_host_header_it_names(origin: ImageServer) -> None:
    assert fetch(origin.url("/image")) == IMAGE
    assert fetch(origin.url("/image", host="localhost"), image_url_allow=["localhost", "127.0.0.1"]) == IMAGE
    assert origin.hosts[-1] == f"localhost:{origin.port}"  # connected to the address, named the host


def test_urls_are_off_unless_something_is_allowed(origin: ImageServer) -> None:
    error = refusal(origin.url("/image"), image_url_allow=[])
    assert isinstance(error, UrlRefused) and "image_url_allow is empty" in error.message


def test_loopback_is_refused_unless_the_allowlist_names_the_address(origin: ImageServer) -> None:
    error = refusal(origin.url("/image", host="localhost"), image_url_allow=["localhost"])
    assert isinstance(error, UrlRefused) and error.status == 403
    assert "resolves to 127.0.0.1, a loopback address" in error.message
    error = refusal(origin.url("/image"), image_url_allow=["images.example.com"])
    assert "host '127.0.0.1' is not in image_url_allow" in error.message


def test_a_prefix_allows_its_paths_only(origin: ImageServer) -> None:
    prefix = f"http://127.0.0.1:{origin.port}/ima"
    assert fetch(origin.url("/image"), image_url_allow=[prefix]) == IMAGE
    error = refusal(origin.url("/big"), image_url_allow=[prefix])
    assert isinstance(error, UrlRefused) and "not in image_url_allow" in error.message
    error = refusal(origin.url("/image/../big"), image_url_allow=[prefix])  # dot segments resolved first
    assert isinstance(error, UrlRefused)


def test_redirects_are_followed_each_rechecked_and_limited(origin: ImageServer) -> None:
    assert fetch(origin.url("/redirect?to=/image")) == IMAGE
    to_refused = origin.url("/redirect?to=" + origin.url("/image", host="localhost"))
    error = refusal(to_refused)
    assert isinstance(error, UrlRefused) and "host 'localhost' is not in image_url_allow" in error.message
    to_metadata = origin.url("/redirect?to=http://169.254.169.254/latest/meta-data/")
    assert "'169.254.169.254' is not in image_url_allow" in refusal(to_metadata).message
    loop = origin.url("/redirect?to=/redirect%3Fto%3D/image")  # two hops
    error = refusal(loop, image_url_max_redirects=1)
    assert "more than image_url_max_redirects=1 redirects" in error.message
    assert fetch(loop, image_url_max_redirects=2) == IMAGE


def test_an_oversized_body_is_cut_while_it_streams(origin: ImageServer) -> None:
    error = refusal(origin.url("/big?chunks=64"), image_url_max_bytes=100_000)  # 4 MiB, no length
    assert isinstance(error, TooLarge) and "exceeds image_url_max_bytes=100000" in error.message
    error = refusal(origin.url("/big-declared"), image_url_max_bytes=100_000)
    assert isinstance(error, TooLarge) and "1000000000 bytes exceed image_url_max_bytes" in error.message


def test_a_slow_body_hits_the_total_timeout(origin: ImageServer) -> None:
    started = time.monotonic()
    error = refusal(origin.url("/slow"), image_url_timeout_s=0.5)
    assert isinstance(error, UrlFetchFailed) and error.status == 422
    assert "image_url_timeout_s=0.5" in error.message
    assert time.monotonic() - started < 5  # 100 bytes at 10/s would take 10 s


def test_errors_and_refused_connections_are_422(origin: ImageServer) -> None:
    error = refusal(origin.url("/missing"))
    assert isinstance(error, UrlFetchFailed) and "answered HTTP 404" in error.message
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    error = refusal(f"http://127.0.0.1:{closed_port}/image")
    assert isinstance(error, UrlFetchFailed) and "could not fetch" in error.message


def test_the_name_is_resolved_once_and_the_checked_address_is_used(
    origin: ImageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: a name that answers a loopback address to the check and another address to a
    second lookup. The fetch must use the first answer and never look the name up again."""
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.test":
            lookups.append(host)
            host = "127.0.0.1" if len(lookups) == 1 else "10.255.255.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = origin.url("/image", host="rebind.test")
    assert fetch(url, image_url_allow=["rebind.test", "127.0.0.1"]) == IMAGE
    assert lookups == ["rebind.test"]


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("10.1.2.3", "private"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("fd00:ec2::254", "private"),  # metadata over IPv6 (unique local)
        ("0.0.0.0", "private"),
        ("100.64.0.1", "not public"),  # carrier-grade NAT (shared address space)
    ],
)
def test_addresses_that_are_not_public_are_refused(
    address: str, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def resolve(*args: Any, **kwargs: Any) -> list[Any]:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, 80))]

    async def check() -> None:
        monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolve)
        await UrlPolicy.parse(["inside.test"]).check("http://inside.test/x.png")

    with pytest.raises(UrlRefused, match=f"a {kind} address"):
        asyncio.run(check())


def test_a_named_network_allows_its_private_addresses() -> None:
    policy = UrlPolicy.parse(["10.1.0.0/16"])
    target = asyncio.run(policy.check("http://10.1.2.3:8080/x.png"))
    assert str(target.connect_url) == "http://10.1.2.3:8080/x.png" and target.host_header == "10.1.2.3:8080"
    with pytest.raises(UrlRefused, match="not in image_url_allow"):
        asyncio.run(policy.check("http://10.2.0.1/x.png"))
    for bad in ("ftp://10.1.2.3/x", "http://user:pw@10.1.2.3/x", "file:///etc/passwd"):
        with pytest.raises(UrlRefused):
            asyncio.run(policy.check(bad))


def test_https_targets_send_sni_and_host_for_the_name() -> None:
    target = asyncio.run(UrlPolicy.parse(["203.0.113.0/24"]).check("https://203.0.113.9/a.png"))
    assert target.connect_url.scheme == "https" and str(target.address) == "203.0.113.9"
    assert is_url("https://x/y") and is_url("HTTP://x") and not is_url(base64.b64encode(IMAGE).decode())


# -- through /classify ---------------------------------------------------------------------------


def test_classify_takes_urls_when_allowed_and_names_the_rule_when_not(origin: ImageServer) -> None:
    settings = server_settings(image_url_allow=["127.0.0.1"], image_url_max_bytes=100_000)
    labels = ["cat", "dog", "bird"]
    with running(settings) as server:
        by_url = httpx.post(
            server.url + "/classify", json={"images": [origin.url("/image")], "labels": labels}, timeout=30
        )
        by_value = httpx.post(
            server.url + "/classify",
            json={"images": [base64.b64encode(IMAGE).decode()], "labels": labels},
            timeout=30,
        )
        assert by_url.status_code == 200, by_url.text
        assert by_url.json()["results"] == by_value.json()["results"]
        answers = {
            origin.url("/image", host="localhost"): (403, "url_refused"),
            origin.url("/big"): (413, "too_large"),
            origin.url("/missing"): (422, "url_fetch_failed"),
        }
        for url, (status, kind) in answers.items():
            response = httpx.post(
                server.url + "/classify", json={"images": [url], "labels": labels}, timeout=30
            )
            assert response.status_code == status, response.text
            assert response.json()["error"]["type"] == kind
        assert httpx.get(server.url + "/health/live").status_code == 200  # still serving
