"""Image URLs as input: `fetch_image(url, settings)` is the one way any route turns a URL into bytes.

Off unless `image_url_allow` lists something (service.api.url_policy says what passes). Each hop is
checked, resolved once, and connected to at the checked address (Host header and TLS SNI still
name the host, so certificates are verified against it); redirects are followed by hand, at most
`image_url_max_redirects`, each re-checked. The body is counted while it streams and cut at
`image_url_max_bytes`; `image_url_connect_timeout_s` bounds each connect and `image_url_timeout_s`
the whole fetch. No proxy from the environment, no cookies, no credentials. Every refusal is a
4xx whose message names the rule: 403 refused by the policy, 413 too large, 422 could not fetch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx

from service.api.url_policy import Target, UrlPolicy
from service.errors import TooLarge, UrlFetchFailed, UrlRefused
from service.settings import Settings

URL_SCHEMES = ("http://", "https://")
HEADERS = {"Accept": "image/*", "Accept-Encoding": "identity", "User-Agent": "clipserve"}


def is_url(text: str) -> bool:
    """Base64 never contains ':', so an image string that starts with a scheme is a URL."""
    return text[:8].lower().startswith(URL_SCHEMES)


async def fetch_images(urls: Sequence[str], settings: Settings) -> list[bytes]:
    """The images at `urls`, fetched concurrently (a request holds at most max_images of them)."""
    return list(await asyncio.gather(*(fetch_image(url, settings) for url in urls)))


async def fetch_image(url: str, settings: Settings) -> bytes:
    policy = UrlPolicy.parse(settings.image_url_allow)
    if not policy.enabled:
        raise UrlRefused(
            "image URLs are off on this server (image_url_allow is empty); send the image itself"
        )
    try:
        async with asyncio.timeout(settings.image_url_timeout_s):
            return await _follow(url, policy, settings)
    except TimeoutError as error:
        raise UrlFetchFailed(
            f"image URL {url[:120]!r}: no complete answer within "
            f"image_url_timeout_s={settings.image_url_timeout_s}"
        ) from error


async def _follow(url: str, policy: UrlPolicy, settings: Settings) -> bytes:
    for _ in range(settings.image_url_max_redirects + 1):
        target = await policy.check(url)
        location = await _get(target, settings)
        if isinstance(location, bytes):
            return location
        url = str(target.url.join(location))
    raise UrlRefused(
        f"image URL {url[:120]!r}: more than "
        f"image_url_max_redirects={settings.image_url_max_redirects} redirects"
    )


async def _get(target: Target, settings: Settings) -> bytes | str:
    """One GET to the checked address: the body, or the Location of a redirect."""
    timeout = httpx.Timeout(settings.image_url_timeout_s, connect=settings.image_url_connect_timeout_s)
    extensions = {"sni_hostname": target.url.host} if target.url.scheme == "https" else {}
    # A fresh client per hop: a pooled connection must never carry a request for another host.
    async with httpx.AsyncClient(trust_env=False, timeout=timeout, follow_redirects=False) as client:
        request = client.build_request(
            "GET", target.connect_url, headers={**HEADERS, "Host": target.host_header}, extensions=extensions
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.TimeoutException as error:
            raise UrlFetchFailed(f"{_named(target)}: {_timeout_rule(error, settings)}") from error
        except httpx.HTTPError as error:
            raise UrlFetchFailed(
                f"{_named(target)}: could not fetch ({type(error).__name__}: {error})"
            ) from error
        try:
            return await _answer(response, target, settings)
        finally:
            await response.aclose()


async def _answer(response: httpx.Response, target: Target, settings: Settings) -> bytes | str:
    if response.is_redirect and "location" in response.headers:
        return response.headers["location"]
    if response.status_code != 200:
        raise UrlFetchFailed(f"{_named(target)} answered HTTP {response.status_code}, not 200")
    limit = settings.image_url_max_bytes
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"{_named(target)}: {declared} bytes exceed image_url_max_bytes={limit}")
    chunks, size = [], 0
    try:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"{_named(target)}: the body exceeds image_url_max_bytes={limit}")
            chunks.append(chunk)
    except httpx.TimeoutException as error:
        raise UrlFetchFailed(f"{_named(target)}: {_timeout_rule(error, settings)}") from error
    except httpx.HTTPError as error:
        raise UrlFetchFailed(f"{_named(target)}: the body broke off ({type(error).__name__})") from error
    return b"".join(chunks)


def _named(target: Target) -> str:
    return f"image URL {str(target.url)[:120]!r}"


def _timeout_rule(error: httpx.TimeoutException, settings: Settings) -> str:
    if isinstance(error, httpx.ConnectTimeout):
        return f"no connection within image_url_connect_timeout_s={settings.image_url_connect_timeout_s}"
    return f"no complete answer within image_url_timeout_s={settings.image_url_timeout_s}"
