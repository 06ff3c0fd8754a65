"""Stage times summed over invocations (`atm_bench.bench.timing`)."""

import json

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
