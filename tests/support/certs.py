"""Test certificates made with the openssl command line (Debian's openssl package): a CA, a broker
certificate for 127.0.0.1 signed by it, and client certificates with chosen subjects. EC P-256 keys,
so a whole set takes a fraction of a second."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

OPENSSL = shutil.which("openssl")


def _run(*args, cwd):
    if OPENSSL is None:
        raise RuntimeError("the openssl command is needed to make test certificates (Debian package openssl)")
    done = subprocess.run([OPENSSL, *args], cwd=str(cwd), capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), done.stderr.strip()))


class CA:
    """A certificate authority in ``directory``: ``ca.pem`` and its key; ``issue()`` signs more."""

    def __init__(self, directory: Path, name: str = "Test CA"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name.replace(" ", "_")
        self.cert = self.dir / ("%s.pem" % self.name)
        self.key = self.dir / ("%s.key" % self.name)
        self.serial = 1
        _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(self.key), "-out", str(self.cert), "-days", "2", "-subj", "/CN=%s" % name,
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
             cwd=self.dir)

    def issue(self, stem: str, subject: str, san: str | None = None, password: str | None = None):
        """(certificate path, key path) for ``subject`` (openssl's ``/DC=com/DC=example/CN=alice``
        form), signed by this CA; ``san`` e.g. ``IP:127.0.0.1``; ``password`` encrypts the key."""
        key, csr, cert = (self.dir / ("%s%s" % (stem, ext)) for ext in (".key", ".csr", ".pem"))
        _run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", subject, cwd=self.dir)
        ext = self.dir / ("%s.ext" % stem)
        ext.write_text("basicConstraints=CA:FALSE\n" + ("subjectAltName=%s\n" % san if san else ""))
        self.serial += 1
        _run("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
             "-set_serial", str(self.serial), "-days", "2", "-out", str(cert), "-extfile", str(ext),
             cwd=self.dir)
        if password is not None:
            plain = key
            key = self.dir / ("%s.enc.key" % stem)
            _run("pkey", "-in", str(plain), "-out", str(key), "-aes256", "-passout", "pass:%s" % password,
                 cwd=self.dir)
        return cert, key


def broker_tls_args(ca: CA, server_cert, server_key, *extra: str, ca_file=True) -> list[str]:
    """Broker options for TLS with ``server_cert``; client certificates checked against ``ca``."""
    args = ["--ssl-cert-file", str(server_cert), "--ssl-key-file", str(server_key)]
    if ca_file:
        args += ["--ssl-ca-file", str(ca.cert)]
    return args + list(extra)
