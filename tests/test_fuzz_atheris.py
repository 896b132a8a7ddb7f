"""A short run of the atheris target in tests/fuzz/ (needs the ``fuzz`` extra): the response
reader survives libFuzzer's inputs, and libFuzzer sees its branches."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

RUNS = 20_000


def test_libfuzzer_finds_no_response_the_reader_mishandles(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris is not installed: pip install -e '.[fuzz]'")
    from tests.fuzz import atheris_responses as target

    corpus = tmp_path / "corpus"
    # A fixed seed for a reproducible run; no RSS watcher thread, which would outlive the run.
    flags = ["-seed=1", f"-atheris_runs={RUNS}", "-rss_limit_mb=0"]
    alarm = signal.getsignal(signal.SIGALRM)
    try:
        with pytest.raises(SystemExit) as done:
            target.fuzz(["atheris_responses", *flags, f"-artifact_prefix={tmp_path}/", str(corpus)])
    finally:
        # libFuzzer leaves its per-input timeout armed: the tests after this one must not get it.
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, alarm)

    assert done.value.code == 0, "a crash: the captured output shows the input and traceback"
    # Inputs beyond the seeds: coverage reached the reader, so the mutations were guided.
    assert len(list(corpus.iterdir())) > len(target.seeds())
