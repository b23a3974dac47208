"""`orch dashboard`: the cluster's Ray dashboard on 127.0.0.1 through a reverse proxy that adds
the cluster token to every request, as `kubectl proxy` does for the Kubernetes API.

The browser never holds the token. Whoever can reach the loopback port uses the dashboard as
the user would (as with kubectl proxy); a web page from elsewhere cannot use it through the
user's browser: a request must name 127.0.0.1 or localhost as its Host (no DNS rebinding)
and carry no other Origin than the proxy's own (no cross-site requests).
"""

from __future__ import annotations

import http.client
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from orchestrator.adapters import auth
from orchestrator.adapters.http import http as ask_cluster  # `http` names the standard library here
from orchestrator.core.errors import SpecError

LOOPBACK = "127.0.0.1"
CHUNK = 64 * 1024
UPSTREAM_TIMEOUT_S = 300  # the slowest dashboard reads (state API on a big cluster) fit; a dead head frees the thread
IDLE_TIMEOUT_S = 300  # a browser's idle keep-alive connection is closed after this
# RFC 9110 7.6.1: these describe one connection, not the message: a proxy never passes them on.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "trailers", "transfer-encoding", "upgrade"})


def checked_token(dashboard_url: str) -> str | None:
    """The token orch holds for the cluster, once the cluster has taken it: ClusterUnavailable
    (exit 3, with where orch looked) when orch has none or the cluster refuses it. None for a
    cluster without token auth (reached with --insecure)."""
    ask_cluster(dashboard_url, "/api/version", service="the Ray dashboard")
    return auth.token()


class DashboardProxy(ThreadingHTTPServer):
    """Serves ``upstream`` (a Ray dashboard URL) on 127.0.0.1:``port`` (0: a free port), adding
    ``token`` as a bearer header. Run it with ``serve_forever()``; ``server_close()`` ends it."""

    daemon_threads = True  # Ctrl-C does not wait for a browser's open connections

    def __init__(self, upstream: str, token: str | None, port: int = 0):
        self.upstream = urllib.parse.urlsplit(upstream.rstrip("/"))
        self.token = token
        try:
            super().__init__((LOOPBACK, port), _Forward)
        except OSError as error:
            raise SpecError(f"--port {port}: cannot listen on {LOOPBACK}:{port} ({error.strerror}); pick another "
                            "port, or leave --port out for a free one") from None
        port = self.server_address[1]
        self.url = f"http://{LOOPBACK}:{port}/"
        self.own_hosts = {f"{LOOPBACK}:{port}", f"localhost:{port}"}
        self.own_origins = {f"http://{host}" for host in self.own_hosts}

    @property
    def upstream_url(self) -> str:
        return urllib.parse.urlunsplit(self.upstream)

    def handle_error(self, request, client_address) -> None:
        """A browser that hung up is no error; anything else is a bug in orch: the traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def connect(self) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self.upstream.scheme == "https" else http.client.HTTPConnection
        return kind(self.upstream.hostname, self.upstream.port, timeout=UPSTREAM_TIMEOUT_S)


class _ClientGone(Exception):
    """The browser closed its connection while the proxy was reading or writing."""


class _Forward(BaseHTTPRequestHandler):
    """One browser connection: each request is sent on to the dashboard with the token and
    its answer streamed back, method, path, query, status, headers and body as they are."""

    protocol_version = "HTTP/1.1"  # keep-alive: the dashboard's pages poll several routes a second
    timeout = IDLE_TIMEOUT_S
    _answered = False  # whether the dashboard's answer has begun on this connection's current request
    server: DashboardProxy

    def do_GET(self) -> None:
        self._answered = False
        refusal = self._refusal()
        if refusal:
            self._answer(*refusal)
            return
        upstream = self.server.connect()
        try:
            self._relay(self._send(upstream))
        except _ClientGone:
            self.close_connection = True
        except (OSError, http.client.HTTPException) as error:
            self._unreachable(error)
        finally:
            upstream.close()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _refusal(self) -> tuple[int, str] | None:
        """Why this request is not forwarded, as (status, message); None to forward it."""
        if not self.path.startswith("/"):
            return 400, "orch dashboard serves one Ray dashboard: request a path (/...), not a URL"
        if (self.headers.get("Host") or "").lower() not in self.server.own_hosts:
            return 403, f"orch dashboard answers only requests for {self.server.url} (Host 127.0.0.1 or localhost)"
        origin = self.headers.get("Origin")
        if origin is not None and origin.lower() not in self.server.own_origins:
            return 403, f"orch dashboard refuses requests from other sites (Origin {origin})"
        if self.headers.get("Transfer-Encoding"):  # browsers send a length; only chunked uploads lack one
            return 411, "orch dashboard forwards request bodies with a Content-Length"
        if not (self.headers.get("Content-Length") or "0").isdigit():
            return 400, "orch dashboard: Content-Length is not a number"
        return None

    def _answer(self, status: int, message: str) -> None:
        """orch's own answer (a refusal, an unreachable dashboard); the connection then closes,
        as an unread request body may follow."""
        body = (message + "\n").encode()
        self.close_connection = True
        self.send_response_only(status)
        for name, value in (("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                            ("Connection", "close")):
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _unreachable(self, error: Exception) -> None:
        """502 when the dashboard did not answer; once its answer has begun, a hang-up on either
        side leaves nothing to tell: the connection closes."""
        if self._answered:
            self.close_connection = True
        else:
            self._answer(502, f"orch dashboard: no answer from the Ray dashboard at "
                              f"{self.server.upstream_url}: {error}")

    def _send(self, upstream: http.client.HTTPConnection) -> http.client.HTTPResponse:
        """The request, its body streamed, to the dashboard with the token; the dashboard's answer."""
        target = self.server.upstream.path + self.path
        upstream.putrequest(self.command, target, skip_host=True, skip_accept_encoding=True)
        upstream.putheader("Host", self.server.upstream.netloc.rpartition("@")[2])
        for name, value in _end_to_end(self.headers.items(), self.headers.get_all("Connection") or ()):
            if name.lower() not in ("host", "authorization"):
                upstream.putheader(name, value)
        if self.server.token:
            upstream.putheader("Authorization", f"Bearer {self.server.token}")
        upstream.endheaders()
        left = int(self.headers.get("Content-Length") or 0)
        while left:
            try:
                piece = self.rfile.read(min(left, CHUNK))
            except OSError:  # timed out or reset: the browser gave up on this request
                piece = b""
            if not piece:
                raise _ClientGone()
            upstream.send(piece)
            left -= len(piece)
        return upstream.getresponse()

    def _relay(self, response: http.client.HTTPResponse) -> None:
        """The dashboard's answer to the browser as it arrives: a body without a length (a
        stream, a close-delimited answer) goes on chunked, so the connection stays usable."""
        self._answered = True
        self.send_response_only(response.status, response.reason)
        for name, value in _end_to_end(response.getheaders(), response.headers.get_all("Connection") or ()):
            self.send_header(name, self._local(value) if name.lower() == "location" else value)
        has_body = self.command != "HEAD" and response.status not in (204, 304)
        chunked = has_body and response.getheader("Content-Length") is None
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while has_body and (piece := response.read1(CHUNK)):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _local(self, location: str) -> str:
        """A redirect to the dashboard's own address, pointed at the proxy instead."""
        upstream = self.server.upstream_url
        if location != upstream and not location.startswith((f"{upstream}/", f"{upstream}?")):
            return location
        return self.server.url.rstrip("/") + location[len(upstream):]

    def log_message(self, format: str, *args) -> None:
        """Quiet: the terminal shows the URL and nothing per request, as `kubectl proxy`'s does."""


def _end_to_end(headers, connection_values) -> list[tuple[str, str]]:
    """``headers`` without the hop-by-hop ones, and without those the Connection header names."""
    named = {token.strip().lower() for value in connection_values for token in value.split(",")}
    return [(name, value) for name, value in headers if name.lower() not in HOP_BY_HOP | named]
