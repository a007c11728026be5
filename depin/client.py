"""An async client for the coordinator's HTTP API, shared by the CLI and the worker.

It maps every failure onto the error tree: an unreachable coordinator is ConnectionFailed, and a 4xx answer
becomes the matching DepinError carrying the server's own reason, so callers never see aiohttp exceptions.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import urllib.parse
from typing import Any

import aiohttp

from depin import codec, protocol
from depin.crypto import SigningKey
from depin.errors import (
    BadRequest,
    Banned,
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

    async def get_json(self, path: str, *, read_timeout_s: float | None = None) -> Any:
        """GET a JSON endpoint."""
        data, _ = await self._request("GET", path, read_timeout_s=read_timeout_s)
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

    async def balance(self, account: str) -> int:
        """GET /v1/accounts/{account}: the credits it holds (a party id, `escrow:<job>` or `bond:<party>`)."""
        answer = await self.get_json(f"/v1/accounts/{urllib.parse.quote(account, safe='')}")
        value = answer.get("balance") if isinstance(answer, dict) else None
        if not isinstance(value, int) or isinstance(value, bool):
            raise PeerProtocolError(f"the balance of {account} is not a whole number of credits")
        return value

    async def move_bond(self, key: SigningKey, kind: str, amount: int) -> dict[str, Any]:
        """POST /v1/bond or /v1/unbond (`kind`) for `amount` credits, signed by the worker's `key` (the bonded party);
        the answer (`worker_id`, `amount`, `seq`, `bonded`, `balance`). A 403 is Banned: the only 403 of these
        endpoints is a banned worker (PROTOCOL.md 7.22)."""
        request = protocol.BondRequest(amount) if kind == "bond" else protocol.UnbondRequest(amount)
        try:
            return dict(await self.post_signed(f"/v1/{kind}", key, kind, request.to_payload()))
        except Forbidden as exc:
            raise Banned(str(exc)) from None
