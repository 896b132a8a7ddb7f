"""BIND 9: answers a query without EDNS that does not fit 512 bytes with a partial answer and TC,
the case a resolver must retry over TCP instead of using."""

from __future__ import annotations

import os
import shutil
import signal
import time

from tests.servers._base import AuthoritativeServer


class BindServer(AuthoritativeServer):
    """``named -g`` in the foreground; changes are applied by SIGHUP (reload zones that changed).

    ``named`` runs from a private copy of the binary: Debian and Ubuntu confine
    ``/usr/sbin/named`` with an AppArmor profile that forbids reading a config under ``/tmp``.
    """

    executable = "named"
    package = "bind9"

    def _command(self) -> list[str]:
        private = self._workdir / "named"
        if not private.exists():
            shutil.copy2(self._executable_path, private)
        return [str(private), "-g", "-n", "1", "-c", str(self._workdir / "named.conf")]

    def _write_config(self) -> None:
        workdir = self._workdir
        (workdir / "named.conf").write_text(
            f"""\
options {{
    directory "{workdir}";
    pid-file "{workdir}/named.pid";
    session-keyfile "{workdir}/session.key";
    listen-on port {self.port} {{ {self.host}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
    max-records-per-type 0;
}};
controls {{ }};
zone "{self.domain}" {{
    type primary;
    file "{self.zone_file}";
}};
"""
        )

    def _reload(self) -> None:
        # named skips a zone file older than its last load; on a file system with coarse
        # timestamps a quick second change would look older, so date the file a second ahead.
        ahead = time.time() + 1
        os.utime(self.zone_file, (ahead, ahead))
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGHUP)
