"""The run's one progress display: plain lines in a log (stage start/end, finished work, no bar
redraws), a live header with stage, agent, seed, task, episodes and ETA, and rich bars of their
own for code running outside a run."""

import io

from rich.progress import Progress

from atm_bench import progress
from atm_bench.progress import RunDisplay


def _stage_with_work(display: RunDisplay) -> None:
    with display.stage("train/atm/seed0", agent="atm", seed=0):
        with progress.bars(True) as bar:
            job = bar.add_task("policy", total=50)
            for i in range(50):
                bar.update(job, advance=1, description=f"policy epoch {i // 10 + 1}/5")
    with display.stage("eval/atm/seed0", agent="atm", seed=0):
        with progress.bars(True) as bar:
            job = bar.add_task("eval atm", total=4, log=False)
            for task in range(2):
                progress.status(task=f"{task} some_task")
                for _ in range(2):
                    bar.advance(job)
                    progress.episode_finished()
                progress.line(f"  eval atm seed 0 task {task}: done")


def test_a_logged_run_prints_one_line_per_stage_event_and_finished_work():
    out = io.StringIO()  # not a terminal
    with RunDisplay(stream=out) as display:
        assert not display.live and progress.active() is display
        display.set_episodes(0, 4)
        _stage_with_work(display)
    assert progress.active() is None
    lines = [line.split(" in ")[0] for line in out.getvalue().splitlines()]
    assert lines == [
        "[stage] train/atm/seed0: start (agent atm, seed 0)",
        "  policy epoch 5/5: 50/50",  # one line for 50 updates
        "[stage] train/atm/seed0: done",
        "[stage] eval/atm/seed0: start (agent atm, seed 0)",
        "  eval atm seed 0 task 0: done",
        "  eval atm seed 0 task 1: done",
        "[stage] eval/atm/seed0: done",
    ]
    assert display.episodes_done == 4


def test_the_live_header_names_stage_agent_seed_task_and_episodes():
    display = RunDisplay(stream=io.StringIO(), live=True, title="libero-goal smoke")
    with display:
        display.set_episodes(3, 10)
        with display.stage("eval/bc/seed1", agent="bc", seed=1):
            progress.status(task="2 open_the_drawer")
            progress.episode_finished()
            header = display.header()
            with progress.bars(True) as bar:
                assert not isinstance(bar, Progress)  # rows of the run's display
                bar.add_task("eval bc", total=5, log=False)
                assert len(display._progress.tasks) == 1
            assert display._progress.tasks == []  # rows go with their stage's work
        after = display.header()
    assert header == ("libero-goal smoke · stage eval/bc/seed1 · agent bc · seed 1 · task 2 open_the_drawer · "
                      "episodes 4/10")
    assert after == "libero-goal smoke · episodes 4/10"


def test_outside_a_run_code_gets_its_own_bar_and_an_interrupted_stage_says_so():
    assert isinstance(progress.bars(True), Progress)
    with RunDisplay(enabled=False):
        assert progress.active() is None and isinstance(progress.bars(True), Progress)
    progress.line("nobody hears this")  # no display: a no-op
    out = io.StringIO()
    display = RunDisplay(stream=out)
    try:
        with display, display.stage("data"):
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert out.getvalue().splitlines()[-1].startswith("[stage] data: interrupted in ")
