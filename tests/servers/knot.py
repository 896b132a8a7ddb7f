"""Knot DNS: starts in milliseconds, truncates oversized UDP answers (TC) and never drops them."""

from __future__ import annotations

import subprocess

from tests.servers._base import AuthoritativeServer, ServerFailed, executable_path


class KnotServer(AuthoritativeServer):
    """``knotd`` in the foreground; changes are applied with a blocking ``knotc zone-reload``."""

    executable = "knotd"
    package = "knot"

    def _command(self) -> list[str]:
        return [self._executable_path, "-c", str(self._workdir / "knot.conf")]

    def _write_config(self) -> None:
        workdir = self._workdir
        (workdir / "knot.conf").write_text(
            f"""\
server:
    listen: {self.host}@{self.port}
    rundir: "{workdir}"
    pidfile: "{workdir}/knot.pid"
    answer-rotation: on
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "{workdir}"
control:
    listen: "{self._control_socket}"
log:
  - target: stderr
    any: notice
template:
  - id: default
    storage: "{workdir}"
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    semantic-checks: off
zone:
  - domain: {self.domain}.
"""
        )

    @property
    def _control_socket(self) -> str:
        return str(self._workdir / "knot.sock")

    def _reload(self) -> None:
        knotc = executable_path("knotc")
        if knotc is None:
            raise ServerFailed("knotc not found: it ships with the Debian package 'knot'")
        result = subprocess.run(
            [knotc, "-s", self._control_socket, "-b", "zone-reload", f"{self.domain}."],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise ServerFailed(f"knotc zone-reload failed: {result.stdout}{result.stderr}")
