"""The gateway's security settings: ``auth`` (API keys, JWT, lockout and the rules that raise security
events), ``audit`` (retention of the audit trail) and ``retention`` (age of analyses)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Signature algorithms with a public key: `none` and HS* (a shared secret, which a public key would
# become if it were accepted as one) are never allowed.
JWT_PUBLIC_KEY_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES256K", "ES384", "ES512", "EdDSA"}
)


class JwtSettings(BaseModel):
    """JWT bearer tokens (PyJWT) as a second way in; off while ``issuer`` is empty."""

    model_config = ConfigDict(extra="forbid")

    issuer: str = Field("", description="Required `iss`; empty = JWTs are not accepted.")
    audience: str = Field("", description="Required `aud` (empty = not checked).")
    jwks_file: str = Field("", description="JSON Web Key Set file with the issuer's public keys.")
    public_key_file: str = Field("", description="PEM public key (when there is no JWKS file).")
    algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256"],
        description="Accepted signature algorithms: public-key ones only (RS*, PS*, ES*, EdDSA); "
        "`none` and the HMAC ones (HS*) are refused.",
    )
    tenant_claim: str = Field(
        "tenant", min_length=1, description="Claim naming the caller's tenant ([A-Za-z0-9._-]{1,64})."
    )
    role_claim: str = Field(
        "role",
        min_length=1,
        description="Claim naming the role: viewer, analyst or admin (or a list of them: the highest counts).",
    )
    leeway_seconds: float = Field(30.0, ge=0, description="Clock skew allowed on exp/nbf/iat.")

    @field_validator("algorithms")
    @classmethod
    def _public_key_algorithms(cls, value: list[str]) -> list[str]:
        refused = [name for name in value if name not in JWT_PUBLIC_KEY_ALGORITHMS]
        if refused or not value:
            raise ValueError(
                f"auth.jwt.algorithms: {refused or 'empty'}; accepted: {sorted(JWT_PUBLIC_KEY_ALGORITHMS)}"
            )
        return value

    @model_validator(mode="after")
    def _keys_when_on(self) -> JwtSettings:
        if self.issuer and not (self.jwks_file or self.public_key_file):
            raise ValueError("auth.jwt.issuer is set: give jwks_file or public_key_file")
        return self


class LockoutSettings(BaseModel):
    """Authentication failures counted per key and per peer address; past ``max_failures`` within
    ``window_seconds`` the key or peer is refused for ``lockout_seconds``."""

    model_config = ConfigDict(extra="forbid")

    max_failures: int = Field(10, ge=1, description="Failures within the window that lock out.")
    window_seconds: float = Field(60.0, gt=0, description="Sliding window of the failure count.")
    lockout_seconds: float = Field(300.0, gt=0, description="How long a locked key or peer is refused.")


class SecurityRuleSettings(BaseModel):
    """Thresholds of the rules that raise security events (per caller, within ``window_seconds``)."""

    model_config = ConfigDict(extra="forbid")

    window_seconds: float = Field(60.0, gt=0, description="Sliding window of every rule.")
    not_found_threshold: int = Field(
        20, ge=1, description="NOT_FOUND answers that count as probing for other tenants' analyses."
    )
    export_threshold: int = Field(
        50, ge=1, description="Result reads and exports that count as a mass export."
    )
    invalid_argument_threshold: int = Field(
        30, ge=1, description="INVALID_ARGUMENT answers that count as a burst of bad requests."
    )


class AuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["on", "off"] = Field(
        "on",
        description="on: every AnalysisService/SecurityService call needs an API key or JWT; off: no "
        "checks, every caller is an admin of tenant_id (logged at warning on every start).",
    )
    bootstrap_admin_key_file: str = Field(
        "",
        description="A file holding an API key (`briefxai up` writes <data-dir>/admin.key): stored, "
        "hashed, as an admin key of tenant_id at start unless already known.",
    )
    jwt: JwtSettings = Field(default_factory=lambda: JwtSettings.model_validate({}))
    lockout: LockoutSettings = Field(default_factory=lambda: LockoutSettings.model_validate({}))
    rules: SecurityRuleSettings = Field(default_factory=lambda: SecurityRuleSettings.model_validate({}))


class AuditSettings(BaseModel):
    """The hash-chained audit trail (``security/audit.py``)."""

    model_config = ConfigDict(extra="forbid")

    retention_days: float = Field(
        0.0,
        ge=0,
        description="Records older than this are summarised into a signed checkpoint and deleted; "
        "0 = kept for ever.",
    )
    checkpoint_key_file: str = Field(
        "",
        description="Secret (any bytes, surrounding whitespace ignored) that signs retention checkpoints "
        "and the chain head (HMAC-SHA256); required when retention_days > 0, and worth setting anyway "
        "(a signed head reveals deleted newest records). Keep it: another key fails every signature.",
    )
    record_reads: bool = Field(
        True, description="Record reads of results (GetAnalysisResults, reports), not only changes."
    )


class RetentionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    analysis_max_age_days: float = Field(
        0.0,
        ge=0,
        description="Analyses (and their conversations, facets, embeddings, results) older than this "
        "are purged; 0 = kept until deleted.",
    )
    purge_interval_seconds: float = Field(
        3600.0, gt=0, description="How often the purge job and the audit retention run."
    )
