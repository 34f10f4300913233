"""An HTTP server of the tests' own on loopback, for image URLs: an image, redirects, an oversized
body (streamed with no length, or declared), a slow body, an error status. It records the Host
header of every request it answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class ImageServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, image: bytes) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.image = image
        self.hosts: list[str] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


class Handler(BaseHTTPRequestHandler):
    server: ImageServer

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self.server.hosts.append(self.headers.get("Host", ""))
        parts = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        route = getattr(self, "route_" + parts.path.strip("/").replace("-", "_"), None)
        if route is None:
            self.send_error(404)
            return
        route(query)

    def route_image(self, query: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.server.image)))
        self.end_headers()
        self.wfile.write(self.server.image)

    def route_redirect(self, query: dict[str, str]) -> None:
        self.send_response(302)
        self.send_header("Location", query["to"])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def route_big(self, query: dict[str, str]) -> None:
        """No Content-Length: the body streams until the connection closes (HTTP/1.0 style)."""
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Connection", "close")
        self.end_headers()
        chunk = b"\0" * 65536
        try:
            for _ in range(int(query.get("chunks", "64"))):
                self.wfile.write(chunk)
        except OSError:  # the client hung up at its limit, as it should
            pass

    def route_big_declared(self, query: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(10**9))
        self.end_headers()

    def route_slow(self, query: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        try:
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass


@contextmanager
def image_server(image: bytes) -> Iterator[ImageServer]:
    server = ImageServer(image)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
