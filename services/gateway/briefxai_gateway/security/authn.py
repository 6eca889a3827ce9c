"""A bearer credential (``authorization: Bearer <api key or JWT>``) to a :class:`Principal`.

API keys are looked up by their hash; a found key is reused for ``KEY_CACHE_SECONDS`` (so a call does not
cost a query), which is also how long a revocation made on another gateway takes to reach this one (the
gateway that revokes forgets the key at once). JWTs are verified by :class:`JwtVerifier`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from briefxai_common.apikeys import hash_api_key, key_id_of, looks_like_api_key

from .jwt_auth import JwtRejected, JwtVerifier, looks_like_jwt
from .keys import ApiKeyRecord, KeyManager, utcnow
from .principal import Principal

KEY_CACHE_SECONDS = 5.0
# last_used_time is written at most this often per key.
TOUCH_INTERVAL_SECONDS = 60.0
BEARER = "bearer "


class AuthenticationFailed(Exception):
    """``reason`` is short and safe to log and count (missing, malformed, unknown, expired, revoked,
    jwt_disabled, jwt:<why>); ``key_id`` names the key tried, when the credential named one."""

    def __init__(self, reason: str, key_id: str = "") -> None:
        self.reason = reason
        self.key_id = key_id
        super().__init__(reason)

    @property
    def message(self) -> str:
        return {
            "missing": "missing credentials: send metadata 'authorization: Bearer <API key or JWT>'",
            "malformed": "the authorization metadata is not 'Bearer <API key or JWT>'",
            "unknown": "unknown API key",
            "expired": "the API key has expired",
            "revoked": "the API key has been revoked",
            "jwt_disabled": "JWTs are not accepted here (auth.jwt.issuer is not set)",
        }.get(self.reason, f"invalid token ({self.reason})")


def bearer_token(authorization: str | None) -> str:
    """The token of an ``authorization`` value; raises :class:`AuthenticationFailed`."""
    if authorization is None or not authorization.strip():
        raise AuthenticationFailed("missing")
    value = authorization.strip()
    if value[: len(BEARER)].lower() != BEARER or not value[len(BEARER) :].strip():
        raise AuthenticationFailed("malformed")
    return value[len(BEARER) :].strip()


@dataclass
class _Cached:
    record: ApiKeyRecord
    fetched: float


class Authenticator:
    def __init__(self, keys: KeyManager, jwt: JwtVerifier | None = None) -> None:
        self.keys = keys
        self.jwt = jwt
        self._cache: dict[str, _Cached] = {}
        self._touched: dict[str, float] = {}

    @staticmethod
    def key_id_in(authorization: str | None) -> str:
        """The key id the credential of ``authorization`` names ("" for a JWT, garbage or none): what
        lockouts count per key."""
        try:
            token = bearer_token(authorization)
        except AuthenticationFailed:
            return ""
        return key_id_of(token) if looks_like_api_key(token) else ""

    async def authenticate(self, authorization: str | None) -> Principal:
        token = bearer_token(authorization)
        if looks_like_api_key(token):
            return await self._api_key(token)
        if looks_like_jwt(token):
            if self.jwt is None:
                raise AuthenticationFailed("jwt_disabled")
            try:
                return self.jwt.verify(token)
            except JwtRejected as rejected:
                raise AuthenticationFailed(f"jwt:{rejected.reason}") from None
        raise AuthenticationFailed("malformed")

    async def _api_key(self, key: str) -> Principal:
        key_id = key_id_of(key)
        key_hash = hash_api_key(key)
        now = time.monotonic()
        cached = self._cache.get(key_hash)
        if cached is None or now - cached.fetched > KEY_CACHE_SECONDS:
            record = await self.keys.lookup(key)
            if record is None:
                self._cache.pop(key_hash, None)
                raise AuthenticationFailed("unknown", key_id)
            if len(self._cache) > 10_000:
                self._cache.clear()
            cached = self._cache[key_hash] = _Cached(record, now)
        refusal = cached.record.refusal(utcnow())
        if refusal is not None:
            raise AuthenticationFailed(refusal, key_id)
        if now - self._touched.get(key_id, -TOUCH_INTERVAL_SECONDS) >= TOUCH_INTERVAL_SECONDS:
            self._touched[key_id] = now
            await self.keys.touch(key_id)
        record = cached.record
        return Principal(f"key:{record.id}", record.tenant_id, record.role, key_id=record.id)

    def forget(self, key_id: str) -> None:
        """Drops a key from the cache (it was revoked here)."""
        for key_hash, cached in list(self._cache.items()):
            if cached.record.id == key_id:
                del self._cache[key_hash]
