"""TLS material for a secure local broker: a private CA and one broker certificate.

Made once with `cryptography` and kept in `<data-dir>/tls/`, so a restart (and
every client configured with `ca.pem`) keeps trusting the same broker. The
broker reads PEM directly (`ssl.keystore.type=PEM`): no keytool, no JKS.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .credentials import write_private

__all__ = ["TlsFiles", "ensure_tls"]

# Every node of a local cluster listens on loopback; one certificate serves them all.
_SAN_DNS = ("localhost",)
_SAN_IP = ("127.0.0.1",)
_CA_DAYS = 3650
_BROKER_DAYS = 825


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where the PEM files live; `keystore` holds the broker's key and chain (owner-only, as `ca.key`)."""

    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def keystore(self) -> Path:
        return self.folder / "broker-keystore.pem"

    def complete(self) -> bool:
        return all(p.exists() for p in (self.ca_cert, self.ca_key, self.keystore))


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "prik local Kafka"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca(now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("prik local Kafka CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_CA_DAYS))
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _broker(
    now: dt.datetime, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.DNSName(d) for d in _SAN_DNS] + [x509.IPAddress(ipaddress.ip_address(i)) for i in _SAN_IP]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("prik-kafka"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_BROKER_DAYS))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # A broker is also a client: of its controller and of the other brokers.
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def ensure_tls(folder: Path) -> TlsFiles:
    """Make the CA and the broker's keystore in `folder` unless they are there already.

    The keys are not encrypted: a password for them would sit next to them in
    the same owner-only folder, and Kafka 4.1 on Java 17 cannot read the PBES2
    encryption `cryptography` (and OpenSSL) use for PKCS#8.
    """
    files = TlsFiles(folder)
    if files.complete():
        return files
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = _ca(now)
    key, cert = _broker(now, ca_key, ca_cert)
    pem = serialization.Encoding.PEM
    write_private(
        files.ca_key,
        ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(),
    )
    private = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    chain = cert.public_bytes(pem) + ca_cert.public_bytes(pem)
    write_private(files.keystore, (private + chain).decode())
    # Written last: its presence is what clients are told to trust.
    files.ca_cert.write_bytes(ca_cert.public_bytes(pem))
    return files
