"""A real PostgreSQL server (Debian's ``postgresql``) on a free loopback port, for tests and benches.

``initdb`` refuses to run as root, so when the suite runs as root (CI, a fresh
Debian machine) the server runs as the ``postgres`` system user that Debian's
package creates, via ``runuser``.  The data directory is temporary and the
server listens only on 127.0.0.1; its Unix socket lives in the data directory.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from attest.testing import free_port

SUPERUSER = "attest"
PASSWORD = "attest-test-pass"


def postgres_bindir() -> Path:
    """The newest installed PostgreSQL server's bin directory."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if not candidates:
        raise RuntimeError(
            "PostgreSQL is not installed; run `make test` (scripts/system-deps.sh installs it)"
        )
    return Path(candidates[-1]).parent


@dataclass
class PostgresServer:
    """One throw-away PostgreSQL cluster with password (scram) auth over TCP."""

    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="attest-pg-")))
    running: bool = False

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = [str(postgres_bindir() / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(
            command, check=True, capture_output=True, text=True, timeout=timeout, cwd=self.workdir
        )

    def start(self) -> PostgresServer:
        if not self.datadir.exists():
            self._init()
        try:
            self._run(
                "pg_ctl",
                "-D",
                str(self.datadir),
                "-l",
                str(self.workdir / "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {self.port} -c listen_addresses=127.0.0.1 "
                f"-c unix_socket_directories={self.workdir} -c fsync=off",
                "start",
            )
        except subprocess.CalledProcessError as err:
            log = self.workdir / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"postgres failed to start: {err.stderr}{tail}") from None
        self.running = True
        return self

    def _init(self) -> None:
        self.workdir.chmod(0o755)
        pwfile = self.workdir / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.workdir, owner.pw_uid, owner.pw_gid)
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--encoding=UTF8",
            "--no-sync",
        )

    def stop(self, *, remove: bool = False) -> None:
        if self.running:
            with contextlib.suppress(subprocess.CalledProcessError):
                self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")
            self.running = False
        if remove:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def wait_stopped(self, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while (self.datadir / "postmaster.pid").exists() and time.monotonic() < end:
            time.sleep(0.05)
