"""A self-signed CA and serving certificate for the admission webhook, made at operator start.

The API server trusts the CA through the webhook configuration's ``caBundle``, which kopf writes;
nothing outside the operator's process needs the key, so a new pair each start is fine.
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

#: Validity of the webhook certificate; the operator makes a new one at every start.
VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class WebhookCerts:
    """Where the serving certificate (with the CA appended) and its key were written, and the CA
    certificate (PEM) the API server must trust (the webhook configuration's ``caBundle``)."""

    certfile: Path
    pkeyfile: Path
    ca_pem: bytes


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_webhook_certs(directory: Path, hosts: list[str]) -> WebhookCerts:
    """Write ``cert.pem`` and ``key.pem`` for ``hosts`` (DNS names or IP addresses) into ``directory``.

    Returns the paths and the CA certificate (PEM) the API server must trust.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("alert-filter-operator webhook CA"))
        .issuer_name(_name("alert-filter-operator webhook CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    certfile, pkeyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM))
    pkeyfile.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    pkeyfile.chmod(0o600)
    return WebhookCerts(certfile, pkeyfile, ca.public_bytes(serialization.Encoding.PEM))
