"""An async client for the coordinator's HTTP API, shared by the CLI and the worker.

It maps every failure onto the error tree: an unreachable coordinator is ConnectionFailed, and a 4xx answer
becomes the matching DepinError carrying the server's own reason, so callers never see aiohttp exceptions.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

import aiohttp

from depin import codec
from depin.crypto import SigningKey
from depin.errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    DepinError,
    Forbidden,
    NotFound,
    PaymentRequired,
    PeerProtocolError,
    TooLarge,
    TooManyRequests,
    VerificationError,
)

_BY_STATUS: dict[int, type[DepinError]] = {
    400: BadRequest, 401: VerificationError, 402: PaymentRequired, 403: Forbidden, 404: NotFound, 409: Conflict,
    413: TooLarge, 429: TooManyRequests,
}


def fresh() -> dict[str, Any]:
    """A new `ts` and `nonce` for a signed request."""
    return {"ts": int(time.time() * 1000), "nonce": secrets.token_bytes(16)}


class Client:
    """One coordinator, one aiohttp session. Use as `async with Client(url) as c:`."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def _request(self, method: str, path: str, *, body: bytes | None = None,
                       read_timeout_s: float | None = None) -> tuple[bytes, str]:
        assert self._session is not None, "use `async with Client(...)`"
        url = self.base_url + path
        timeout = None if read_timeout_s is None else aiohttp.ClientTimeout(total=None, connect=10,
                                                                            sock_read=read_timeout_s)
        headers = {"Content-Type": "application/msgpack"} if body is not None else {}
        try:
            async with self._session.request(method, url, data=body, headers=headers, timeout=timeout) as resp:
                data = await resp.read()
                ctype = resp.content_type
                status = resp.status
        except aiohttp.ClientConnectorError as exc:
            reason = (exc.os_error.strerror if exc.os_error else None) or "connection failed"
            raise ConnectionFailed(f"cannot reach the coordinator at {self.base_url} ({reason.lower()})") from None
        except (TimeoutError, asyncio.TimeoutError):
            raise ConnectionFailed(f"cannot reach the coordinator at {self.base_url} (timed out)") from None
        except (aiohttp.ClientError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            raise ConnectionFailed(f"cannot reach the coordinator at {self.base_url} ({reason})") from None
        if status >= 400:
            reason = data[:300].decode("utf-8", "replace")
            if ctype == "application/json":
                try:
                    reason = str(json.loads(data).get("error", reason))
                except (ValueError, AttributeError):
                    pass
            cls = _BY_STATUS.get(status, DepinError)
            raise cls(f"coordinator refused: {reason}" if cls is DepinError else reason)
        return data, ctype

    async def get_json(self, path: str) -> Any:
        """GET a JSON endpoint."""
        data, _ = await self._request("GET", path)
        try:
            return json.loads(data)
        except ValueError:
            raise PeerProtocolError(f"{path}: the coordinator answered something that is not JSON") from None

    async def get_msgpack(self, path: str) -> Any:
        """GET a msgpack endpoint."""
        data, _ = await self._request("GET", path)
        return codec.decode(data)

    async def post(self, path: str, obj: Any, *, read_timeout_s: float | None = None) -> Any:
        """POST msgpack, decode the msgpack answer."""
        data, _ = await self._request("POST", path, body=codec.encode(obj), read_timeout_s=read_timeout_s)
        return codec.decode(data)

    async def post_signed(self, path: str, key: SigningKey, kind: str, payload: dict[str, Any], *,
                          read_timeout_s: float | None = None) -> Any:
        """POST a freshly signed envelope of `kind`."""
        envelope = key.seal(kind, {**payload, **fresh()})
        return await self.post(path, envelope, read_timeout_s=read_timeout_s)
