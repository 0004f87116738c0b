"""The control plane's certificate for its agents, and how an agent pins it (docs/fleet.md).

Without ``--tls-cert``, ``dbsafe serve`` makes a self-signed certificate once (ECDSA P-256,
ten years: it is pinned, not trusted through a chain, so it needs no renewal to stay
safe) and keeps it in its folder, the key readable by its owner only. An agent is given the
certificate's SHA-256 fingerprint with its registration token, checks it before it sends
anything, and from then on trusts exactly that certificate.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dbsafe.core.errors import DbsafeError
from dbsafe.core.private_files import write_private

CERT_FILE = "agents-cert.pem"
KEY_FILE = "agents-key.pem"
VALID_FOR = timedelta(days=3650)


def fingerprint(pem: bytes) -> str:
    """``sha256:`` and the hex SHA-256 of the certificate's DER form (what `openssl x509
    -fingerprint -sha256` shows, without the colons)."""
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def same_fingerprint(a: str, b: str) -> bool:
    """Fingerprints compared as their hex digits (colons and case as anyone types them)."""
    def digits(text: str) -> str:
        return text.lower().removeprefix("sha256:").replace(":", "")
    return digits(a) == digits(b)


def self_signed(folder: Path, names: list[str]) -> tuple[Path, Path]:
    """(certificate, key) in ``folder``: made once, for ``names`` (host names and
    addresses) the first time, and reused as they are afterwards (agents pinned it)."""
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dbsafe control plane")])
    alt: list[x509.GeneralName] = []
    for name in dict.fromkeys([*names, socket.gethostname(), "localhost"]):
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + VALID_FOR)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    write_private(key_path, key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def fetch_certificate(host: str, port: int, timeout: float = 10.0) -> bytes:
    """The certificate a TLS server shows, as PEM, without trusting it (an agent then
    compares its fingerprint with the one it was given)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock, \
                context.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    except OSError as exc:
        raise DbsafeError("agent.control_unreachable", url=f"https://{host}:{port}",
                          reason=exc.strerror or str(exc)) from None
    if der is None:
        raise DbsafeError("agent.control_unreachable", url=f"https://{host}:{port}",
                          reason="it showed no certificate")
    return ssl.DER_cert_to_PEM_cert(der).encode()


def pinned_context(cert_pem: Path | None, ca_file: Path | None) -> ssl.SSLContext:
    """The TLS context of an agent's calls: trusting exactly the pinned certificate (its
    names are not checked: the pin is the identity), or a CA's chain with the names checked
    (``ca_file``, or the system's when neither is given)."""
    if cert_pem is not None:
        context = ssl.create_default_context(cafile=str(cert_pem))
        context.check_hostname = False
        return context
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
