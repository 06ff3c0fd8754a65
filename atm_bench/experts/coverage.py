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
            "no working skill: the horizontal hand that opens the other drawers does not open this cabinet's "
            "bottom drawer, whose handle is near the table (not diagnosed further)"
        ),
        "KITCHEN_SCENE10_put_the_chocolate_pudding_in_the_top_drawer_of_the_cabinet_and_close_it": (
            "under 60 %: the pudding box stands just in front of the cabinet, and with the top drawer open the "
            "palm of the top-down hand hits the drawer's front on the way down to it"
        ),
        "KITCHEN_SCENE4_close_the_bottom_drawer_of_the_cabinet_and_open_the_top_drawer": (
            "under 60 %: after the pitched hand pushes the bottom drawer shut the arm is sometimes left "
            "stretched (elbow at its joint limit) and stalls on the way to the top drawer's handle"
        ),
        "KITCHEN_SCENE5_put_the_ketchup_in_the_top_drawer_of_the_cabinet": (
            "under 60 %: the tall ketchup bottle is set down in the open top drawer but LIBERO's In check "
            "fails and the retries do not fix it (not diagnosed further)"
        ),
        "KITCHEN_SCENE7_open_the_microwave": "no skill yet: swinging a hinged door open (only closing it is scripted)",
        "STUDY_SCENE4_pick_up_the_book_in_the_middle_and_place_it_on_the_cabinet_shelf": (
            "no skill yet: the book stands 13.5 cm tall and the shelf's opening is 13.8 cm, so it must go in "
            "lying flat, held from the side; the expert only grasps from above and cannot lay a book down"
        ),
        "STUDY_SCENE4_pick_up_the_book_on_the_right_and_place_it_on_the_cabinet_shelf": (
            "no skill yet: the shelf's opening (13.8 cm) leaves no room for a top-down hand above the standing "
            "book (12.2 cm); it must go in lying flat, which the expert cannot do (it only grasps from above)"
        ),
        "STUDY_SCENE4_pick_up_the_book_on_the_right_and_place_it_under_the_cabinet_shelf": (
            "no skill yet: the space under the shelf (7 cm) is lower than the standing book (12.2 cm); it must go "
            "in lying flat, which the expert cannot do (it only grasps from above)"
        ),
    },
}


def unsolved(suite: str) -> dict[str, str]:
    """Task name -> reason for the tasks of `suite` (canonical name, e.g. libero_90) the expert does not solve."""
    return dict(UNSOLVED.get(str(suite), {}))
