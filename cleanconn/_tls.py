"""
A throwaway certificate authority for TLS tests, made in memory.

``serving(factory, tls=True)`` makes one; ``connected()`` to that port then
speaks TLS with certificate verification **on**, trusting exactly this CA.
Nothing is written to disk unless :meth:`ThrowawayCA.write` is called.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import TLSUnavailable

if TYPE_CHECKING:
    from twisted.internet.ssl import Certificate, CertificateOptions


def _require_tls() -> Any:
    try:
        import service_identity  # noqa: F401
        from cryptography import x509
        from OpenSSL import SSL  # noqa: F401
    except ImportError as e:
        raise TLSUnavailable(
            f"TLS needs optional dependencies that are missing ({e.name}): "
            "install them with pip install 'cleanconn[tls]'."
        ) from e
    return x509


class ThrowawayCA:
    """
    A fresh CA and one server certificate signed by it, valid for
    :attr:`hostnames` (by default ``127.0.0.1``, ``::1`` and
    ``localhost``), made in memory.

    Keys are ECDSA P-256 (fast to make). Use :meth:`client_options` or
    :meth:`https_policy` to give other clients (treq, ``connectSSL``,
    ``wrapClientTLS``) exactly this trust root.

    :param hostnames: the DNS names and IP addresses the server certificate
        covers.
    """

    def __init__(
        self, hostnames: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")
    ) -> None:
        x509 = _require_tls()
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        now = datetime.datetime.now(datetime.timezone.utc)
        valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=2))

        def name(common: str) -> Any:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = name("cleanconn throwaway CA")
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid[0])
            .not_valid_after(valid[1])
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
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
                True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        alt_names: list[Any] = []
        for host in hostnames:
            try:
                alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alt_names.append(x509.DNSName(host))
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(hostnames[0]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid[0])
            .not_valid_after(valid[1])
            .add_extension(x509.SubjectAlternativeName(alt_names), False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .sign(ca_key, hashes.SHA256())
        )
        pem = serialization.Encoding.PEM
        #: The CA certificate, PEM-encoded: what a client must trust.
        self.ca_pem: bytes = ca.public_bytes(pem)
        #: The server certificate, PEM-encoded.
        self.cert_pem: bytes = cert.public_bytes(pem)
        #: The server's private key, PEM-encoded (PKCS#8, unencrypted).
        self.key_pem: bytes = key.private_bytes(
            pem,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        #: The DNS names and IP addresses the server certificate covers, as
        #: given (the first is also its common name): the names a client
        #: may verify it against, such as :meth:`client_options`'s
        #: ``hostname``.
        self.hostnames = hostnames

    @property
    def trust_root(self) -> Certificate:
        """The CA as a Twisted ``Certificate``, usable as ``trustRoot=``."""
        from twisted.internet.ssl import Certificate

        return Certificate.loadPEM(self.ca_pem)

    def server_options(
        self, *, acceptable_protocols: Sequence[bytes] = ()
    ) -> CertificateOptions:
        """
        Server-side TLS options presenting the server certificate.

        :param acceptable_protocols: the ALPN protocols to offer, in order of
            preference (such as a ``Site``'s ``acceptableProtocols()``).
        """
        from twisted.internet.ssl import CertificateOptions, PrivateCertificate

        private = PrivateCertificate.loadPEM(self.key_pem + self.cert_pem)  # type: ignore[no-untyped-call]
        if not acceptable_protocols:
            return private.options()  # type: ignore[no-any-return]
        return CertificateOptions(
            privateKey=private.privateKey.original,
            certificate=private.original,
            acceptableProtocols=list(acceptable_protocols),
        )

    def client_options(self, hostname: str = "127.0.0.1") -> Any:
        """
        Client TLS options that verify the server against this CA only.

        :param hostname: the name or IP address to verify the certificate
            against (it must be one of :attr:`hostnames`).
        :return: an ``IOpenSSLClientConnectionCreator`` for ``connectSSL``,
            ``wrapClientTLS`` or ``TLSMemoryBIOFactory``.
        """
        from twisted.internet.ssl import optionsForClientTLS

        return optionsForClientTLS(hostname, trustRoot=self.trust_root)

    def https_policy(self) -> Any:
        """
        A policy for ``twisted.web.client.Agent(contextFactory=...)``
        (and so treq) that trusts exactly this CA.
        """
        from twisted.web.client import BrowserLikePolicyForHTTPS

        return BrowserLikePolicyForHTTPS(trustRoot=self.trust_root)  # type: ignore[no-untyped-call]

    def write(self, directory: str | Path) -> dict[str, Path]:
        """
        Write ``ca.pem``, ``cert.pem`` and ``key.pem`` into ``directory``
        (for a client in another process); the key file is mode 0600.

        :return: the three paths, keyed ``"ca"``, ``"cert"`` and ``"key"``.
        """
        folder = Path(directory)
        paths = {name: folder / f"{name}.pem" for name in ("ca", "cert", "key")}
        paths["ca"].write_bytes(self.ca_pem)
        paths["cert"].write_bytes(self.cert_pem)
        paths["key"].touch(mode=0o600)
        paths["key"].write_bytes(self.key_pem)
        return paths
