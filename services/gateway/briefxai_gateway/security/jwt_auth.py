"""JWT bearer tokens (PyJWT) to a :class:`Principal`: the second way in, beside API keys.

The issuer's public keys come from a JWKS file (the token's ``kid`` picks one) or a PEM file, read at
construction and again on :meth:`JwtVerifier.reload`. A token is accepted only with a valid signature
by one of them under an allowed public-key algorithm that fits the key (never ``none``, never HS*), the
configured ``iss``, ``aud`` when one is configured, an ``exp`` in the future and ``nbf``/``iat`` not in
it (within ``leeway_seconds``), a ``sub``, a tenant and a role. The principal is ``jwt:<sub>``.

A refusal is a :class:`JwtRejected` whose ``reason`` is short and safe to log or count: ``expired``,
``not_yet_valid``, ``bad_signature``, ``bad_algorithm``, ``wrong_issuer``, ``wrong_audience``,
``missing_claim:<name>``, ``bad_role``, ``bad_tenant``, ``unknown_kid`` or ``malformed``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from ..security_settings import JWT_PUBLIC_KEY_ALGORITHMS, JwtSettings
from .principal import Principal, Role

TENANT_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Three base64url segments, the first a JSON object (``{"`` encodes as ``eyJ``).
_JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp256k1": "ES256K", "secp384r1": "ES384", "secp521r1": "ES512"}


class JwtRejected(Exception):
    """A token that is not accepted; ``reason`` says why in a few safe words (never the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def looks_like_jwt(token: str) -> bool:
    """Whether a bearer credential is shaped like a JWT (and so is not an API key)."""
    return _JWT_SHAPE.fullmatch(token) is not None


@dataclass(frozen=True)
class _Keys:
    """The issuer's keys as last read: by kid from a JWKS file, or one PEM key."""

    by_kid: dict[str, jwt.PyJWK]
    pem_key: Any = None
    pem_algorithms: tuple[str, ...] = ()


class JwtVerifier:
    """Verifies bearer JWTs against ``settings`` (whose ``issuer`` must be set)."""

    def __init__(self, settings: JwtSettings) -> None:
        if not settings.issuer:
            raise ValueError("auth.jwt.issuer is empty: JWTs are not accepted")
        self._settings = settings
        self._algorithms = [name for name in settings.algorithms if name in JWT_PUBLIC_KEY_ALGORITHMS]
        self._keys = self._load()

    def reload(self) -> None:
        """Reads the key files again (a rotated JWKS); on an error the keys read before stay in use."""
        self._keys = self._load()

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys.by_kid)

    def verify(self, token: str) -> Principal:
        """The caller a valid token names; raises :class:`JwtRejected` otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise JwtRejected("malformed") from None
        key, algorithms = self._key_for(header)
        settings = self._settings
        required = ["exp", "iss", "sub"] + (["aud"] if settings.audience else [])
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=algorithms,
                issuer=settings.issuer,
                audience=settings.audience or None,
                leeway=settings.leeway_seconds,
                options={"require": required, "verify_aud": bool(settings.audience)},
            )
        except jwt.PyJWTError as error:
            raise JwtRejected(_reason(error)) from None
        return self._principal(claims)

    def _key_for(self, header: dict[str, Any]) -> tuple[Any, list[str]]:
        """The key that must have signed a token with this header, and the algorithms it may use."""
        keys = self._keys
        if keys.pem_key is not None:
            return keys.pem_key, list(keys.pem_algorithms)
        kid = header.get("kid")
        if kid is None and len(keys.by_kid) == 1:
            found = next(iter(keys.by_kid.values()))
        elif isinstance(kid, str) and kid in keys.by_kid:
            found = keys.by_kid[kid]
        else:
            raise JwtRejected("unknown_kid")
        return found, [found.algorithm_name] if found.algorithm_name in self._algorithms else []

    def _principal(self, claims: dict[str, Any]) -> Principal:
        settings = self._settings
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise JwtRejected("missing_claim:sub")
        tenant = claims.get(settings.tenant_claim)
        if tenant is None:
            raise JwtRejected(f"missing_claim:{settings.tenant_claim}")
        if not isinstance(tenant, str) or not TENANT_PATTERN.fullmatch(tenant):
            raise JwtRejected("bad_tenant")
        role = claims.get(settings.role_claim)
        if role is None:
            raise JwtRejected(f"missing_claim:{settings.role_claim}")
        return Principal(actor=f"jwt:{subject}", tenant_id=tenant, role=_role(role))

    def _load(self) -> _Keys:
        settings = self._settings
        if settings.jwks_file:
            return _Keys(by_kid=_read_jwks(Path(settings.jwks_file)))
        key = _read_pem(Path(settings.public_key_file))
        algorithms = tuple(name for name in self._algorithms if name in _algorithms_for(key))
        if not algorithms:
            raise ValueError(
                f"{settings.public_key_file}: none of auth.jwt.algorithms {self._algorithms} fits this key"
            )
        return _Keys(by_kid={}, pem_key=key, pem_algorithms=algorithms)


def _read_jwks(path: Path) -> dict[str, jwt.PyJWK]:
    """The signing keys of a JWKS file by kid (a key without one under ""); symmetric (``oct``) keys
    and encryption keys are left out."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable JWKS file ({error})") from error
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: a JWKS file holds {{'keys': [...]}}")
    usable = [
        entry
        for entry in entries
        if isinstance(entry, dict) and entry.get("kty") != "oct" and entry.get("use", "sig") == "sig"
    ]
    try:
        key_set = jwt.PyJWKSet(usable)
    except jwt.PyJWTError as error:
        raise ValueError(f"{path}: no usable public signing key ({error})") from error
    by_kid: dict[str, jwt.PyJWK] = {}
    for key in key_set:
        kid = key.key_id or ""
        if kid in by_kid:
            raise ValueError(f"{path}: two signing keys with kid {kid!r}")
        by_kid[kid] = key
    return by_kid


def _read_pem(path: Path) -> Any:
    try:
        return serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"{path}: not a readable PEM public key ({error})") from error


def _algorithms_for(key: Any) -> frozenset[str]:
    """The signature algorithms that use a key of this type (and curve)."""
    if isinstance(key, rsa.RSAPublicKey):
        return _RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        name = _EC_ALGORITHMS.get(key.curve.name)
        return frozenset({name} if name else ())
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return frozenset({"EdDSA"})
    return frozenset()


def _role(value: object) -> Role:
    """A role claim: one role name, or a list of them of which the highest known one counts."""
    names: Sequence[object] = value if isinstance(value, list) else [value]
    roles = []
    for name in names:
        if isinstance(name, str):
            try:
                roles.append(Role.parse(name))
            except ValueError:
                continue
    if not roles:
        raise JwtRejected("bad_role")
    return max(roles)


def _reason(error: jwt.PyJWTError) -> str:
    """The safe reason for one of PyJWT's refusals (subclasses before their bases)."""
    if isinstance(error, jwt.ExpiredSignatureError):
        return "expired"
    if isinstance(error, jwt.ImmatureSignatureError):
        return "not_yet_valid"
    if isinstance(error, jwt.InvalidAudienceError):
        return "wrong_audience"
    if isinstance(error, jwt.InvalidIssuerError):
        return "wrong_issuer"
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"missing_claim:{error.claim}"
    if isinstance(error, jwt.InvalidAlgorithmError | jwt.InvalidKeyError):
        return "bad_algorithm"
    if isinstance(error, jwt.InvalidSignatureError):
        return "bad_signature"
    return "malformed"
