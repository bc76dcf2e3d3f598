"""Authentication: ``Authorization: Bearer <key>`` → the caller (tenant, key id, role), once per
request at the edge; everything below receives the caller and scopes by its tenant.

Lookups are cached for ``auth_cache_s`` (1 s by default) so a request does not drop into the store
each time; a key revoked by another process or host (``keel keys revoke``) stops working within that.
An admin key may act for another tenant with ``x-keel-tenant``; other keys may not.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import wraps

from starlette.requests import Request
from starlette.responses import Response

from keel.errors import AuthError
from keel.errors import Forbidden as Forbidden
from keel.store.keys import DEFAULT_TENANT, Caller, Keys, check_tenant

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
MAX_CACHED = 10_000
NO_AUTH = Caller(DEFAULT_TENANT, None, "admin")  # loopback development without keys
MEMBERS = ("member",)  # who may call a route unless it says otherwise (admins always may)
Handler = Callable[[Request], Awaitable[Response]]


def caller_of(request: Request) -> Caller:
    """The caller a guarded route's request carries (see ``Authenticator.guard``)."""
    caller: Caller = request.state.caller
    return caller


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class Authenticator:
    def __init__(self, keys: Keys | None, *, cache_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.keys = keys
        self.cache_s = cache_s
        self.clock = clock  # tests move it instead of sleeping out the cache
        self._cache: dict[str, tuple[Caller | None, float]] = {}

    def guard(self, handler: Handler, roles: tuple[str, ...] = MEMBERS) -> Handler:
        """The one authentication a route does: the caller (tenant, key, role) is on
        ``request.state`` before ``handler`` runs, or the request is answered 401/403."""

        @wraps(handler)
        async def guarded(request: Request) -> Response:
            request.state.caller = self.identify(
                request.headers.get("authorization"), request.headers.get("x-keel-tenant"), roles
            )
            return await handler(request)

        return guarded

    def identify(self, header: str | None, act_as: str | None = None, roles: tuple[str, ...] = ()) -> Caller:
        """The caller of a request; ``roles`` (when given) are the roles allowed on the route, admin
        always included. ``act_as`` is the ``x-keel-tenant`` header: honoured for admins only."""
        caller = self._caller(header)
        if roles and caller.role not in roles and not caller.admin:
            raise Forbidden(f"a '{caller.role}' key may not do this (it needs: {', '.join(('admin', *roles))})")
        if act_as is not None and act_as != caller.tenant:
            if not caller.admin:
                raise Forbidden("only admin keys may act for another tenant (x-keel-tenant)")
            return Caller(check_tenant(act_as), caller.key, caller.role)
        return caller

    def _caller(self, header: str | None) -> Caller:
        if self.keys is None:
            return NO_AUTH
        key = bearer(header)
        if key is None:
            raise AuthError("missing API key: send 'Authorization: Bearer <key>' (create one with `keel keys create`)")
        now = self.clock()
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            found = hit[0]
        else:
            found = self.keys.caller(key)
            if self.cache_s > 0:
                if len(self._cache) >= MAX_CACHED:
                    self._cache.clear()
                self._cache[key] = (found, now + self.cache_s)
        if found is None:
            raise AuthError("invalid or revoked API key")
        return found
