"""Credentials from :class:`~briefxai_common.config.TLSSettings`: the gRPC server's (TLS, or mTLS with a
client CA), the HTTP side port's ``ssl.SSLContext`` (never asking for a client certificate: probes and
scrapers have none), and the client side of a channel to another service (the CA that verifies it, this
process' certificate as the client's, the name to check).

Certificates are read when a server or channel is built: a rotated certificate takes a restart.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import grpc

from briefxai_common.config import ConfigError, TLSSettings


def _read(key: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"tls.{key}: cannot read {path}: {exc}") from exc


def server_credentials(tls: TLSSettings) -> grpc.ServerCredentials | None:
    """The gRPC port's credentials; None for plaintext. With ``client_ca_file`` every client must present
    a certificate that CA signed."""
    if not tls.enabled:
        return None
    pair = (_read("key_file", tls.key_file), _read("cert_file", tls.cert_file))
    client_ca = _read("client_ca_file", tls.client_ca_file) if tls.client_ca_file else None
    return grpc.ssl_server_credentials(
        [pair], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def http_ssl_context(tls: TLSSettings) -> ssl.SSLContext | None:
    """The HTTP side port's server context (HTTPS with the same certificate); None for plain HTTP."""
    if not tls.enabled:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls.cert_file/key_file: cannot load {tls.cert_file}: {exc}") from exc
    return context


def channel_credentials(tls: TLSSettings, *, present_certificate: bool = True) -> grpc.ChannelCredentials:
    """Client credentials for a TLS channel: servers verified with ``ca_file`` (else the system's roots);
    ``cert_file``/``key_file``, when set and ``present_certificate``, presented as the client certificate."""
    roots = _read("ca_file", tls.ca_file) if tls.ca_file else None
    if present_certificate and tls.cert_file:
        return grpc.ssl_channel_credentials(
            root_certificates=roots,
            private_key=_read("key_file", tls.key_file),
            certificate_chain=_read("cert_file", tls.cert_file),
        )
    return grpc.ssl_channel_credentials(root_certificates=roots)


def channel_options(tls: TLSSettings) -> list[tuple[str, Any]]:
    """The channel options TLS needs: the name checked in server certificates, when overridden."""
    if tls.calls_secure and tls.server_name:
        return [("grpc.ssl_target_name_override", tls.server_name)]
    return []
