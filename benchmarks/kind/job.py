"""The benchmark Job's command: ``run.py --target cluster``, then its results in the log.

A completed pod cannot be exec'd into, so ``kubectl cp`` cannot fetch the results directory
once the Job is done. This prints it instead: after ``run.py`` exits, the directory (the
Markdown report, ``results.json`` and the plots) goes to stdout as a gzipped tar in base64
between a ``BEGIN`` and an ``END`` line, which ``benchmarks/kind/run.sh`` cuts out of
``kubectl logs`` and unpacks. Usage: ``python benchmarks/kind/job.py [run.py options]``;
``BENCH_OUT`` is where ``run.py`` writes (default ``/tmp/results``). Exits with ``run.py``'s
status, after printing whatever it wrote.
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

RUN = Path(__file__).resolve().parent.parent / "run.py"
BEGIN = "----- BEGIN headless-bench results (tar.gz, base64) -----"
END = "----- END headless-bench results -----"


def archive(folder: Path) -> bytes:
    """Every file in ``folder`` as a gzipped tar, names relative to it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(folder)))
    return buffer.getvalue()


def main(argv: list[str]) -> int:
    out = Path(os.environ.get("BENCH_OUT", "/tmp/results"))
    command = [sys.executable, str(RUN), "--target", "cluster", "--out", str(out), *argv]
    status = subprocess.call(command)
    sys.stderr.flush()
    if out.is_dir():
        print(BEGIN)
        print(base64.encodebytes(archive(out)).decode("ascii"), end="")
        print(END, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
