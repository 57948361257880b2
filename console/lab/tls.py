"""Self-signed TLS certificates for the lab's HTTPS endpoints (Redfish BMCs).

One certificate covers every lab address: its subject alternative names are
``localhost``, ``127.0.0.1`` and each IP address passed in (no wildcards; IP SANs
are what a client checks when it connects to ``https://127.78.0.1``).  The key is
ECDSA P-256 because it is generated in milliseconds, which keeps a cold lab start
fast.

The pair is cached in a directory chosen by the caller (``cert.pem`` + ``key.pem``)
and reused while it still covers the requested addresses and stays valid for more
than a day; otherwise it is regenerated for the union of the old and new addresses.  A
lock file serialises processes sharing the directory.  Clients that want to verify the lab can use ``cert.pem`` as their
CA file: it is its own trust anchor.

Only loopback addresses (127.0.0.0/8) are accepted: the lab never serves anything
else.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CERT_NAME", "KEY_NAME", "ensure_cert", "server_context"]

CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"
_LOCK_NAME = ".lock"
_VALID_DAYS = 365
_MIN_REMAINING = dt.timedelta(days=1)
_MAX_SANS = 4096  # beyond this a cached certificate starts afresh rather than growing
_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


def _loopback_set(addresses: Iterable[str]) -> set[ipaddress.IPv4Address]:
    out = {ipaddress.IPv4Address("127.0.0.1")}
    for a in addresses:
        ip = ipaddress.ip_address(a)
        if ip not in _LOOPBACK:
            raise ValueError(f"lab certificates cover loopback addresses only, not {a}")
        out.add(ip)  # type: ignore[arg-type]
    return out


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    with open(directory / _LOCK_NAME, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _cached(cert_path: Path, key_path: Path) -> set[ipaddress.IPv4Address] | None:
    """The IP SANs of a cached pair that matches and is not about to expire, else None."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        return None
    now = dt.datetime.now(dt.UTC)
    if cert.not_valid_after_utc - now < _MIN_REMAINING or cert.not_valid_before_utc > now:
        return None
    return {ip for ip in sans.get_values_for_type(x509.IPAddress) if isinstance(ip, ipaddress.IPv4Address)}


def _generate(wanted: set[ipaddress.IPv4Address]) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fleet-console lab"),
        x509.NameAttribute(NameOID.COMMON_NAME, "fleet-console lab BMC"),
    ])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    sans = [x509.DNSName("localhost"), *(x509.IPAddress(ip) for ip in sorted(wanted))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))  # tolerate small clock skew between processes
        .not_valid_after(now + dt.timedelta(days=_VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        # A leaf that is its own trust anchor: strict verifiers (Python 3.13's
        # VERIFY_X509_STRICT) want CA:FALSE, key identifiers and serverAuth.
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=True, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert_pem, key_pem


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def ensure_cert(cert_dir: str | os.PathLike[str], addresses: Iterable[str] = ()) -> tuple[Path, Path]:
    """Return ``(cert_path, key_path)`` in ``cert_dir``, generating them when needed.

    The certificate's IP SANs cover ``127.0.0.1`` and every address in
    ``addresses`` (all must be in 127.0.0.0/8, else ``ValueError``).  A cached pair
    that already covers them is reused as is; one that does not is replaced by a
    pair covering both its addresses and the new ones.
    """
    wanted = _loopback_set(addresses)
    directory = Path(cert_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_path, key_path = directory / CERT_NAME, directory / KEY_NAME
    with _locked(directory):
        have = _cached(cert_path, key_path)
        if have is None or not wanted <= have:
            # Keep the addresses other users of this directory asked for, so a lab and its
            # tests sharing a cache do not regenerate each other's certificate forever.
            if have is not None and len(have | wanted) <= _MAX_SANS:
                wanted = have | wanted
            cert_pem, key_pem = _generate(wanted)
            # Key first: a reader that sees the new cert always finds its key.
            _write_atomic(key_path, key_pem, 0o600)
            _write_atomic(cert_path, cert_pem, 0o644)
    return cert_path, key_path


def server_context(addresses: Iterable[str], cert_dir: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """A server-side ``SSLContext`` whose certificate covers ``addresses``.

    With ``cert_dir=None`` the pair is generated in a private temporary directory
    that is removed once the context has loaded it (nothing is cached).
    """
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_dir is None:
        with tempfile.TemporaryDirectory(prefix="fleet-lab-tls-") as tmp:
            cert_path, key_path = ensure_cert(tmp, addresses)
            ctx.load_cert_chain(cert_path, key_path)
    else:
        cert_path, key_path = ensure_cert(cert_dir, addresses)
        ctx.load_cert_chain(cert_path, key_path)
    return ctx
