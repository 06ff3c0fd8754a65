"""Stage times summed over invocations (`atm_bench.bench.timing`)."""

import json
import signal
import subprocess
import sys
import time

import pytest

from atm_bench.bench.timing import StageTimes


def test_stage_times_add_up_over_invocations_and_failures(tmp_path):
    path = tmp_path / "timing.json"
    first = StageTimes(path)
    with first.timed("train"):
        pass
    with pytest.raises(RuntimeError), first.timed("eval"):  # the time of a failed stage was spent too
        raise RuntimeError("crash")
    assert set(json.loads(path.read_text())) == {"train", "eval"}

    again = StageTimes(path)  # a resumed invocation starts from the stored times
    assert again.seconds == first.seconds
    (path).write_text(json.dumps({"train": 1.5, "eval": 2.0}))
    resumed = StageTimes(path)
    with resumed.timed("train"):
        pass
    stored = json.loads(path.read_text())
    assert stored["eval"] == 2.0 and 1.5 <= stored["train"] < 2.5


def test_a_stage_killed_mid_way_keeps_its_time(tmp_path):
    """SIGKILL runs no `finally`: the time written while the stage ran is what remains."""
    path = tmp_path / "timing.json"
    code = ("import sys, time; from atm_bench.bench.timing import StageTimes\n"
            "with StageTimes(sys.argv[1]).timed('train', flush_seconds=0.1):\n    time.sleep(600)\n")
    process = subprocess.Popen([sys.executable, "-c", code, str(path)])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and json.loads(path.read_text() if path.exists() else "{}").get("train", 0) < 0.5:
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert json.loads(path.read_text())["train"] >= 0.5
