"""HTTP plumbing of the Salesforce stand-in: the response value, and a threaded HTTPS
server whose handler hands each request to the stand-in's two endpoints (OAuth token and
``/services/data``) and writes what they return. Nothing here knows Salesforce semantics.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

NO_BODY = object()  # a request that carried no JSON body


@dataclass(frozen=True, slots=True)
class Response:
    """What an endpoint answers; ``drop`` closes the connection without answering."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    drop: bool = False  # close the connection without answering


def error_response(status: int, code: str, message: str) -> Response:
    """The REST API's error body: a list of one ``{message, errorCode}``."""
    return Response(status, [{"message": message, "errorCode": code}])


def method_not_allowed(method: str, allowed: str) -> Response:
    """405, as the REST API answers an unsupported method on a resource."""
    return error_response(
        405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are {allowed}"
    )


TokenEndpoint = Callable[[str, bytes, Mapping[str, str]], Response]
DataEndpoint = Callable[[str, str, str, bytes, Mapping[str, str]], Response]


class HttpsServer(ThreadingHTTPServer):
    """HTTPS on an ephemeral 127.0.0.1 port; tracks connections so stop can drop them."""

    daemon_threads = True

    def __init__(
        self, context: ssl.SSLContext, token_endpoint: TokenEndpoint, data_endpoint: DataEndpoint
    ):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.token_endpoint = token_endpoint
        self.data_endpoint = data_endpoint
        # The handshake runs in the connection's thread, not in the accept loop.
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handleerror_response(self, request: Any, client_address: Any) -> None:
        # Clients dropping connections (and stop()) are routine here, not worth a traceback.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HttpsServer
    timeout = 60
    _handshake_ok = False

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes; without NODELAY, Nagle and delayed
        # ACKs add ~40 ms to every response.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.connection.do_handshake()
            self._handshake_ok = True
        except (ssl.SSLError, OSError):
            self.close_connection = True

    def handle(self) -> None:
        if self._handshake_ok:
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        # Requests carry tokens and caller data: the stand-in never logs them.
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        if split.path.rstrip("/") == "/services/oauth2/token":
            response = self.server.token_endpoint(self.command, raw, headers)
        elif split.path.rstrip("/") == "/services/data" or split.path.startswith("/services/data/"):
            response = self.server.data_endpoint(
                self.command, split.path, split.query, raw, headers
            )
        else:
            response = error_response(404, "NOT_FOUND", "The requested resource does not exist")
        if response.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(response)

    def _send(self, response: Response) -> None:
        payload = b""
        content_type = "application/json;charset=UTF-8"
        if response.raw is not None:
            payload = response.raw
            content_type = response.headers.get("Content-Type", "application/octet-stream")
        elif response.status != 204 and response.body is not None:
            payload = json.dumps(response.body).encode()
        self.send_response(response.status)
        for name, value in response.headers.items():
            if name != "Content-Type":
                self.send_header(name, value)
        if response.status != 204:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)
