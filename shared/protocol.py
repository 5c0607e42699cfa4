"""The HTTP/1.1 server protocol every service runs under: uvicorn's httptools protocol with a
cap on the request head, which uvicorn does not bound.

Run a service with `uvicorn <module>:app --http shared.protocol:HttpProtocol`. A request line
and header fields passing `MAX_HEAD_BYTES`, or more than `MAX_HEADERS` fields, get 431
`headers_too_large` (414 `uri_too_long` when the request target alone passes the cap), and
the connection closes; trailers of a chunked body count like header fields. The count runs
while the head arrives, so the server holds at most the cap plus a few reads from the socket
before it refuses, however large the head was meant to be.
"""

from __future__ import annotations

import json
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from shared.errors import ErrorCode, error_body
from shared.limits import MAX_HEAD_BYTES, MAX_HEADERS

UVICORN_HTTP = "shared.protocol:HttpProtocol"
"""The value of uvicorn's `--http` option that selects this protocol."""
LINGER_SECONDS = 2.0


class HeadTooLarge(Exception):
    """The request head passed a cap; raised in a parser callback to stop the parser."""

    def __init__(self, status: int, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request head larger than the caps.

    Parser callbacks run for every request, so the count rides on as few of them as it can:
    `on_url` and `on_header` replace uvicorn's (the same body plus the count) rather than
    wrap them, and the count restarts at a message's first header field, where uvicorn has
    just begun a new header list.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0  # request target and completed header fields of this message
        # Bytes read without visible progress: the parser is buffering a header field (or a
        # trailer) that has not ended yet, which no callback shows.
        self._stalled_bytes = 0
        self._body_seen = False
        self._refusal: HeadTooLarge | None = None

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # refused: whatever else comes on this connection is dropped
        self._unset_keepalive_if_required()
        # A new scope means a message began; a new cycle, that a head ended.
        scope, cycle = self.scope, self.cycle
        self._body_seen = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, HeadTooLarge):
                self._refuse(exc.__context__)
            else:
                message = "Invalid HTTP request received."
                self.logger.warning(message)
                self.send_400_response(message)
            return
        if self._body_seen or self.scope is not scope or self.cycle is not cycle:
            self._stalled_bytes = 0
            return
        self._stalled_bytes += len(data)
        if self._stalled_bytes > MAX_HEAD_BYTES:
            self._refuse(_head_too_large())

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_HEAD_BYTES:
            raise HeadTooLarge(
                414,
                ErrorCode.URI_TOO_LONG,
                f"the request target is longer than {MAX_HEAD_BYTES} bytes",
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        # Trailers of a chunked body land here too, and count against the same caps.
        headers = self.headers
        if not headers:
            self._head_bytes = len(self.url)
        elif len(headers) >= MAX_HEADERS:
            raise HeadTooLarge(
                431,
                ErrorCode.HEADERS_TOO_LARGE,
                f"the request has more than {MAX_HEADERS} header fields",
            )
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > MAX_HEAD_BYTES:
            raise _head_too_large()
        # uvicorn's own on_header from here on.
        name = name.lower()
        # llhttp keeps trailing whitespace, which RFC 9110, section 5.5 excludes from the value.
        value = value.rstrip(b" \t")
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body_seen = True
        super().on_body(body)

    def _refuse(self, refusal: HeadTooLarge) -> None:
        self._refusal = refusal
        self.logger.warning("Refused a request: %s.", refusal.message)
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            self._send_refusal(refusal)
        elif cycle.scope is self.scope:
            # The fields are trailers of the request being answered: to its app the request
            # ends as if the client had gone.
            cycle.disconnected = True
            cycle.message_event.set()
            if cycle.response_started:
                self.transport.close()
            else:
                self._send_refusal(refusal)
        else:
            # Requests before this one on the connection are still being answered (the
            # latest of them last): the refusal follows its response.
            self.flow.pause_reading()
            answered = cycle.on_response

            def then_refuse() -> None:
                answered()
                if not self.transport.is_closing():
                    self._send_refusal(refusal)

            cycle.on_response = then_refuse

    def _send_refusal(self, refusal: HeadTooLarge) -> None:
        body = json.dumps(error_body(refusal.code, refusal.message)).encode()
        content = [STATUS_LINE[refusal.status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode() + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        # Closing with unread bytes makes the kernel reset the connection, which can destroy
        # the answer before the client reads it: half-close, then read and drop whatever still
        # comes for a moment (RFC 9112, section 9.6). The client's own close ends it sooner.
        self.transport.write_eof()
        self.flow.resume_reading()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


def _head_too_large() -> HeadTooLarge:
    return HeadTooLarge(
        431,
        ErrorCode.HEADERS_TOO_LARGE,
        f"the request line and header fields are larger than {MAX_HEAD_BYTES} bytes",
    )
