"""The LIBERO tasks the scripted expert does not solve, by suite and task name, with the reason.

A task is listed when the expert reached under 60 % (the bar of issue 18) in the measurement the
README quotes (`benchmarks/expert_success.py`, results in `results/experts/<suite>.json`), or has
no skill for its goal at all. `atm-bench run` leaves these tasks out of a default run and says so
in one line; `unsolved(suite)` is what it reads. Pure data: no simulator needed.
"""

from __future__ import annotations

UNSOLVED: dict[str, dict[str, str]] = {
    "libero_90": {
        "KITCHEN_SCENE1_open_the_bottom_drawer_of_the_cabinet": (
            "no skill yet: the wooden cabinet's bottom handle is 4.5 cm above the table, too low for the "
            "horizontal hand that opens drawers (its lower finger and palm hit the table)"
        ),
        "KITCHEN_SCENE7_open_the_microwave": "no skill yet: swinging a hinged door open (only closing it is scripted)",
        "STUDY_SCENE4_pick_up_the_book_in_the_middle_and_place_it_on_the_cabinet_shelf": (
            "no skill yet: a standing book is as tall as the shelf's opening, so a top-down hand cannot put it "
            "in; it needs a side grasp"
        ),
        "STUDY_SCENE4_pick_up_the_book_on_the_right_and_place_it_on_the_cabinet_shelf": (
            "no skill yet: a standing book is as tall as the shelf's opening, so a top-down hand cannot put it "
            "in; it needs a side grasp"
        ),
        "STUDY_SCENE4_pick_up_the_book_on_the_right_and_place_it_under_the_cabinet_shelf": (
            "no skill yet: a standing book is taller than the space under the shelf; it needs a side grasp"
        ),
    },
}


def unsolved(suite: str) -> dict[str, str]:
    """Task name -> reason for the tasks of `suite` (canonical name, e.g. libero_90) the expert does not solve."""
    return dict(UNSOLVED.get(str(suite), {}))
