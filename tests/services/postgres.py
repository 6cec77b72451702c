"""A real PostgreSQL for tests: a throw-away cluster on loopback, on a private port and socket directory.

``running_postgres(tmp_dir)`` yields ``postgresql://postgres@127.0.0.1:PORT/postgres`` (trust auth on
loopback only) and removes the cluster afterwards. It finds ``initdb``/``pg_ctl`` on PATH, in
/usr/local/bin or /usr/lib/postgresql/*/bin, and runs ``apt-get install -y postgresql`` only when they are
missing. ``initdb`` refuses root, so as root the cluster runs as the ``postgres`` user (created if missing).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from schemas.tables.clinical import OMOP_CDM

_SQL_TYPES = {"int": "bigint", "float": "double precision", "str": "text", "date": "date",
              "datetime": "timestamp"}


def find_pg_bin() -> Path | None:
    """Folder holding ``initdb`` and ``pg_ctl``, or None."""
    candidates = []
    which = shutil.which("initdb")
    if which:
        candidates.append(Path(which).parent)
    candidates.append(Path("/usr/local/bin"))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists() and (c / "postgres").exists():
            return c
    for c in candidates:  # /usr/local/bin may hold wrappers only; initdb finds postgres itself
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    return None


def _ensure_binaries() -> Path:
    found = find_pg_bin()
    if found is None:
        subprocess.run(["apt-get", "install", "-y", "postgresql"], check=True, capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = find_pg_bin()
    if found is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found, even after apt-get install")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


@contextlib.contextmanager
def running_postgres(tmp_dir: Path | None = None) -> Iterator[str]:
    """Start a private PostgreSQL cluster; yield its URL; stop and remove it.

    Parameters
    ----------
    tmp_dir
        Parent folder for the cluster when the server user can enter it; otherwise the system temp dir.
    """
    bindir = _ensure_binaries()
    user = None
    if os.geteuid() == 0:
        user = "postgres"
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", user], check=True, capture_output=True)
    parent = Path(tmp_dir) if tmp_dir is not None and user is None else None
    base = Path(tempfile.mkdtemp(prefix="osteolake-pg-", dir=parent))
    data, sock, log = base / "data", base / "sock", base / "server.log"
    sock.mkdir()
    if user:
        os.chmod(base, 0o755)
        info = pwd.getpwnam(user)
        for p in (base, sock):
            os.chown(p, info.pw_uid, info.pw_gid)
    port = _free_port()
    try:
        subprocess.run(_as_user([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                 "-E", "UTF8", "--no-locale"], user), check=True, capture_output=True)
        opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(_as_user([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(log), "-w",
                                 "-t", "60", "start"], user), check=True, capture_output=True)
    except subprocess.CalledProcessError as e:
        detail = (e.stderr or b"").decode(errors="replace")
        if log.exists():
            detail += log.read_text(errors="replace")[-2000:]
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL from {bindir}: {detail}") from e
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], user),
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def load_omop_csv(url: str, folder: Path, schema: str = "public") -> dict[str, int]:
    """Create the OMOP v5.4 tables found as ``<table>.csv`` in ``folder`` in ``schema`` and COPY them in.

    Returns rows loaded per table.
    """
    import psycopg

    counts: dict[str, int] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'create schema if not exists "{schema}"')
        for table, cols in OMOP_CDM.items():
            path = Path(folder) / f"{table}.csv"
            if not path.exists():
                continue
            ddl = ", ".join(f"{c.name} {_SQL_TYPES[c.kind]}" for c in cols)
            conn.execute(f'drop table if exists "{schema}"."{table}"')
            conn.execute(f'create table "{schema}"."{table}" ({ddl})')
            header = path.read_text().splitlines()[0]
            with conn.cursor() as cur:
                with cur.copy(f'copy "{schema}"."{table}" ({header}) from stdin with (format csv, header true)') as cp:
                    cp.write(path.read_bytes())
                counts[table] = int(cur.execute(f'select count(*) from "{schema}"."{table}"').fetchone()[0])  # type: ignore[index]
    return counts
