"""JWT bearer tokens: keys from a JWKS file (by kid) or a PEM file, every claim checked, and each way a
token is refused named by a short reason. Keys are generated here with ``cryptography``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import ValidationError

from briefxai_gateway.security.jwt_auth import JwtRejected, JwtVerifier, looks_like_jwt
from briefxai_gateway.security.principal import Role
from briefxai_gateway.security_settings import JwtSettings

ISSUER = "https://idp.example.test"
AUDIENCE = "briefxai"


@dataclass(frozen=True)
class Keys:
    rsa_key: rsa.RSAPrivateKey
    ec_key: ec.EllipticCurvePrivateKey
    other_rsa_key: rsa.RSAPrivateKey


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(
        rsa_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec_key=ec.generate_private_key(ec.SECP256R1()),
        other_rsa_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


def jwk(key: Any, kid: str | None, alg: str | None = None) -> dict[str, Any]:
    public = key.public_key()
    found = (
        RSAAlgorithm.to_jwk(public, as_dict=True)
        if isinstance(public, rsa.RSAPublicKey)
        else ECAlgorithm.to_jwk(public, as_dict=True)
    )
    if kid is not None:
        found["kid"] = kid
    if alg is not None:
        found["alg"] = alg
    return found


def write_jwks(path: Path, *entries: dict[str, Any]) -> str:
    path.write_text(json.dumps({"keys": list(entries)}), encoding="utf-8")
    return str(path)


def write_pem(path: Path, key: Any) -> str:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return str(path)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    found: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-42",
        "exp": now + 600,
        "iat": now,
        "nbf": now,
        "tenant": "acme",
        "role": "analyst",
    }
    found.update(overrides)
    return {name: value for name, value in found.items() if value is not None}


def token(key: Any, kid: str | None = "rsa-1", algorithm: str = "RS256", **overrides: Any) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims(**overrides), key, algorithm=algorithm, headers=headers)


def segment(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def hs256_forged(secret: bytes, kid: str | None = None) -> str:
    """The algorithm confusion attack: HS256 with the issuer's PUBLIC key as the shared secret (PyJWT
    refuses to make such a token, so it is put together by hand)."""
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    signing_input = f"{segment(header)}.{segment(claims(role='admin'))}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def settings(**values: Any) -> JwtSettings:
    return JwtSettings.model_validate({"issuer": ISSUER, "audience": AUDIENCE, **values})


@pytest.fixture
def jwks_verifier(tmp_path: Path, keys: Keys) -> JwtVerifier:
    path = write_jwks(tmp_path / "jwks.json", jwk(keys.rsa_key, "rsa-1", "RS256"), jwk(keys.ec_key, "ec-1"))
    return JwtVerifier(settings(jwks_file=path))


@pytest.fixture
def pem_verifier(tmp_path: Path, keys: Keys) -> JwtVerifier:
    return JwtVerifier(settings(public_key_file=write_pem(tmp_path / "issuer.pem", keys.rsa_key)))


def rejected(verifier: JwtVerifier, credential: str) -> str:
    with pytest.raises(JwtRejected) as caught:
        verifier.verify(credential)
    return caught.value.reason


def test_a_jwks_with_two_keys_picks_the_key_by_kid(jwks_verifier: JwtVerifier, keys: Keys) -> None:
    assert jwks_verifier.key_ids == ["ec-1", "rsa-1"]
    by_rsa = jwks_verifier.verify(token(keys.rsa_key, "rsa-1"))
    assert (by_rsa.actor, by_rsa.tenant_id, by_rsa.role, by_rsa.key_id) == (
        "jwt:user-42",
        "acme",
        Role.ANALYST,
        "",
    )
    by_ec = jwks_verifier.verify(
        token(keys.ec_key, "ec-1", "ES256", sub="svc", tenant="globex", role="admin")
    )
    assert (by_ec.actor, by_ec.tenant_id, by_ec.role) == ("jwt:svc", "globex", Role.ADMIN)


def test_a_pem_key(pem_verifier: JwtVerifier, keys: Keys, tmp_path: Path) -> None:
    assert pem_verifier.verify(token(keys.rsa_key, kid=None)).actor == "jwt:user-42"
    # A PS256 signature by the same RSA key is accepted once PS256 is allowed.
    ps = JwtVerifier(
        settings(public_key_file=write_pem(tmp_path / "ps.pem", keys.rsa_key), algorithms=["PS256"])
    )
    assert ps.verify(token(keys.rsa_key, kid=None, algorithm="PS256")).role == Role.ANALYST
    ec_verifier = JwtVerifier(settings(public_key_file=write_pem(tmp_path / "ec.pem", keys.ec_key)))
    assert ec_verifier.verify(token(keys.ec_key, kid=None, algorithm="ES256")).tenant_id == "acme"


def test_a_single_jwks_key_without_kid(tmp_path: Path, keys: Keys) -> None:
    verifier = JwtVerifier(settings(jwks_file=write_jwks(tmp_path / "one.json", jwk(keys.ec_key, None))))
    assert verifier.verify(token(keys.ec_key, kid=None, algorithm="ES256")).actor == "jwt:user-42"


def test_custom_claims_and_role_lists(tmp_path: Path, keys: Keys) -> None:
    verifier = JwtVerifier(
        settings(
            public_key_file=write_pem(tmp_path / "k.pem", keys.rsa_key),
            tenant_claim="org",
            role_claim="roles",
        )
    )
    principal = verifier.verify(
        token(keys.rsa_key, tenant=None, role=None, org="acme.eu", roles=["viewer", "x", "admin"])
    )
    assert (principal.tenant_id, principal.role) == ("acme.eu", Role.ADMIN)
    assert rejected(verifier, token(keys.rsa_key, org="acme")) == "missing_claim:roles"
    assert rejected(verifier, token(keys.rsa_key, roles=["analyst"])) == "missing_claim:org"
    assert rejected(verifier, token(keys.rsa_key, org="acme", roles=["root", 3])) == "bad_role"


def test_the_audience_is_not_checked_when_none_is_configured(tmp_path: Path, keys: Keys) -> None:
    verifier = JwtVerifier(settings(audience="", public_key_file=write_pem(tmp_path / "k.pem", keys.rsa_key)))
    assert verifier.verify(token(keys.rsa_key, aud="anything")).actor == "jwt:user-42"
    assert verifier.verify(token(keys.rsa_key, aud=None)).actor == "jwt:user-42"


def test_expiry_with_leeway(pem_verifier: JwtVerifier, keys: Keys) -> None:
    now = int(time.time())
    assert rejected(pem_verifier, token(keys.rsa_key, exp=now - 120)) == "expired"
    # Within the 30 s leeway of clock skew.
    assert pem_verifier.verify(token(keys.rsa_key, exp=now - 5)).actor == "jwt:user-42"


def test_not_yet_valid(pem_verifier: JwtVerifier, keys: Keys) -> None:
    now = int(time.time())
    assert rejected(pem_verifier, token(keys.rsa_key, nbf=now + 600)) == "not_yet_valid"
    assert rejected(pem_verifier, token(keys.rsa_key, iat=now + 600)) == "not_yet_valid"
    assert pem_verifier.verify(token(keys.rsa_key, nbf=now + 5, iat=now + 5)).actor == "jwt:user-42"


@pytest.mark.parametrize("claim", ["exp", "iss", "sub", "aud", "tenant", "role"])
def test_a_missing_claim(pem_verifier: JwtVerifier, keys: Keys, claim: str) -> None:
    missing: dict[str, Any] = {claim: None}
    assert rejected(pem_verifier, token(keys.rsa_key, **missing)) == f"missing_claim:{claim}"


def test_an_empty_subject(pem_verifier: JwtVerifier, keys: Keys) -> None:
    assert rejected(pem_verifier, token(keys.rsa_key, sub="")) == "missing_claim:sub"


def test_wrong_issuer_and_audience(pem_verifier: JwtVerifier, keys: Keys) -> None:
    assert rejected(pem_verifier, token(keys.rsa_key, iss="https://evil.example")) == "wrong_issuer"
    assert rejected(pem_verifier, token(keys.rsa_key, aud="someone-else")) == "wrong_audience"
    assert pem_verifier.verify(token(keys.rsa_key, aud=["other", AUDIENCE])).actor == "jwt:user-42"


@pytest.mark.parametrize("role", ["root", "", 7, None])
def test_bad_role(pem_verifier: JwtVerifier, keys: Keys, role: Any) -> None:
    credential = token(keys.rsa_key, role=role) if role is not None else token(keys.rsa_key, role=[])
    assert rejected(pem_verifier, credential) == "bad_role"


@pytest.mark.parametrize("tenant", ["../other", "a" * 65, "", "acme corp", 12])
def test_bad_tenant(pem_verifier: JwtVerifier, keys: Keys, tenant: Any) -> None:
    assert rejected(pem_verifier, token(keys.rsa_key, tenant=tenant)) == "bad_tenant"


def test_bad_signature(jwks_verifier: JwtVerifier, pem_verifier: JwtVerifier, keys: Keys) -> None:
    # Signed by another key under a kid the issuer uses.
    assert rejected(jwks_verifier, token(keys.other_rsa_key, "rsa-1")) == "bad_signature"
    assert rejected(pem_verifier, token(keys.other_rsa_key)) == "bad_signature"
    # A payload changed after signing (admin instead of analyst).
    header, _, signature = token(keys.rsa_key).split(".")
    tampered = f"{header}.{segment(claims(role='admin'))}.{signature}"
    assert rejected(pem_verifier, tampered) == "bad_signature"


def test_unknown_kid(jwks_verifier: JwtVerifier, keys: Keys) -> None:
    assert rejected(jwks_verifier, token(keys.rsa_key, "rsa-2")) == "unknown_kid"
    # With two keys in the set, a token must say which one signed it.
    assert rejected(jwks_verifier, token(keys.rsa_key, kid=None)) == "unknown_kid"


def test_alg_none_is_refused(jwks_verifier: JwtVerifier, pem_verifier: JwtVerifier) -> None:
    unsigned = jwt.encode(claims(role="admin"), "", algorithm="none", headers={"kid": "rsa-1"})
    assert rejected(jwks_verifier, unsigned) == "bad_algorithm"
    assert rejected(pem_verifier, unsigned) == "bad_algorithm"


def test_hs256_with_the_public_key_as_secret_is_refused(
    jwks_verifier: JwtVerifier, pem_verifier: JwtVerifier, tmp_path: Path
) -> None:
    public_pem = (tmp_path / "issuer.pem").read_bytes()
    assert rejected(pem_verifier, hs256_forged(public_pem)) == "bad_algorithm"
    assert rejected(jwks_verifier, hs256_forged(public_pem, kid="rsa-1")) == "bad_algorithm"


def test_an_algorithm_that_does_not_fit_the_key_is_refused(
    jwks_verifier: JwtVerifier, pem_verifier: JwtVerifier, tmp_path: Path, keys: Keys
) -> None:
    # The JWKS binds rsa-1 to RS256: a PS256 signature by the same key is not accepted.
    assert rejected(jwks_verifier, token(keys.rsa_key, "rsa-1", "PS256")) == "bad_algorithm"
    # An ES256 token against the RSA PEM key, and RS384 outside the allow-list.
    assert rejected(pem_verifier, token(keys.ec_key, kid=None, algorithm="ES256")) == "bad_algorithm"
    assert rejected(pem_verifier, token(keys.rsa_key, kid=None, algorithm="RS384")) == "bad_algorithm"


@pytest.mark.parametrize("credential", ["not-a-token", "a.b.c", "eyJub3Q.eyJub3Q.c2ln", ""])
def test_malformed(pem_verifier: JwtVerifier, credential: str) -> None:
    assert rejected(pem_verifier, credential) == "malformed"


def test_signed_but_malformed_claims(pem_verifier: JwtVerifier, keys: Keys) -> None:
    not_json = jwt.PyJWS().encode(b"not json", keys.rsa_key, algorithm="RS256")
    assert rejected(pem_verifier, not_json) == "malformed"
    assert rejected(pem_verifier, token(keys.rsa_key, exp="tomorrow")) == "malformed"


def test_the_reason_never_carries_the_token(pem_verifier: JwtVerifier, keys: Keys) -> None:
    credential = token(keys.other_rsa_key)
    with pytest.raises(JwtRejected) as caught:
        pem_verifier.verify(credential)
    assert str(caught.value) == "bad_signature"
    assert caught.value.__cause__ is None


def test_reload_reads_a_rotated_jwks(tmp_path: Path, keys: Keys) -> None:
    path = tmp_path / "jwks.json"
    verifier = JwtVerifier(settings(jwks_file=write_jwks(path, jwk(keys.rsa_key, "rsa-1"))))
    old = token(keys.rsa_key, "rsa-1")
    new = token(keys.other_rsa_key, "rsa-2")
    assert rejected(verifier, new) == "unknown_kid"

    write_jwks(path, jwk(keys.other_rsa_key, "rsa-2"))
    verifier.reload()
    assert verifier.verify(new).actor == "jwt:user-42"
    assert rejected(verifier, old) == "unknown_kid"

    # A broken file is refused and the keys read before stay in use.
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="JWKS"):
        verifier.reload()
    assert verifier.verify(new).actor == "jwt:user-42"


def test_unusable_key_files_are_refused_at_start(tmp_path: Path, keys: Keys) -> None:
    with pytest.raises(ValueError, match="JWKS"):
        JwtVerifier(settings(jwks_file=str(tmp_path / "missing.json")))
    only_secret = write_jwks(tmp_path / "oct.json", {"kty": "oct", "k": "c2VjcmV0", "kid": "s"})
    with pytest.raises(ValueError, match="no usable public signing key"):
        JwtVerifier(settings(jwks_file=only_secret))
    twice = write_jwks(tmp_path / "twice.json", jwk(keys.rsa_key, "k"), jwk(keys.ec_key, "k"))
    with pytest.raises(ValueError, match="two signing keys"):
        JwtVerifier(settings(jwks_file=twice))
    (tmp_path / "junk.pem").write_text("not a key", encoding="utf-8")
    with pytest.raises(ValueError, match="PEM"):
        JwtVerifier(settings(public_key_file=str(tmp_path / "junk.pem")))
    with pytest.raises(ValueError, match="fits this key"):
        JwtVerifier(
            settings(public_key_file=write_pem(tmp_path / "ec.pem", keys.ec_key), algorithms=["RS256"])
        )
    with pytest.raises(ValueError, match="issuer"):
        JwtVerifier(JwtSettings.model_validate({}))


@pytest.mark.parametrize("algorithms", [["none"], ["HS256"], ["RS256", "HS512"], []])
def test_settings_refuse_algorithms_without_a_public_key(algorithms: list[str]) -> None:
    with pytest.raises(ValidationError, match="algorithms"):
        JwtSettings.model_validate({"algorithms": algorithms})


def test_looks_like_jwt(keys: Keys) -> None:
    assert looks_like_jwt(token(keys.rsa_key))
    assert looks_like_jwt(jwt.encode({"a": 1}, "", algorithm="none"))
    assert not looks_like_jwt("bxk_3f2a9c_9d8e7f6a5b4c3d2e1f")
    assert not looks_like_jwt("sk-abcdef1234567890")
    assert not looks_like_jwt("eyJ.only-two")
    assert not looks_like_jwt("")
