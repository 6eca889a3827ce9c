"""Test certificates made with ``cryptography``: a CA, a server certificate for 127.0.0.1 and localhost,
a client certificate, and a second CA that signed none of them (for "not trusted")."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_FOR = datetime.timedelta(days=2)


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA's certificate (PEM)
    server: Pair  # SAN 127.0.0.1 and localhost; serverAuth and clientAuth
    client: Pair  # signed by the CA; clientAuth
    other_ca: Path  # a CA that signed nothing here
    rogue_client: Pair  # a client certificate the other CA signed


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _builder(subject: str, issuer: str, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
    )


def _ca(directory: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    key = _key()
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.pem"
    _write_cert(cert, path)
    return key, path


def _leaf(
    directory: Path,
    name: str,
    ca_name: str,
    ca_key: ec.EllipticCurvePrivateKey,
    usages: list[x509.ObjectIdentifier],
    sans: list[x509.GeneralName],
) -> Pair:
    key = _key()
    builder = (
        _builder(name, ca_name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    pair = Pair(directory / f"{name}.crt", directory / f"{name}.key")
    _write_cert(cert, pair.cert)
    _write_key(key, pair.key)
    return pair


def make_certificates(directory: Path) -> Certificates:
    """Writes the CA, server and client certificates (and keys) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = _ca(directory, "test-ca")
    other_key, other_ca = _ca(directory, "other-ca")
    both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    server_sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
    ]
    server = _leaf(directory, "server", "test-ca", ca_key, both, server_sans)
    client = _leaf(directory, "client", "test-ca", ca_key, [ExtendedKeyUsageOID.CLIENT_AUTH], [])
    rogue = _leaf(directory, "rogue", "other-ca", other_key, [ExtendedKeyUsageOID.CLIENT_AUTH], [])
    return Certificates(ca=ca, server=server, client=client, other_ca=other_ca, rogue_client=rogue)
