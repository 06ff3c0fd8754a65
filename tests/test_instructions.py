"""One instruction per task: what demos store, what training reads and what evaluation tells the
agent are the same sentence, for every task of the five suites."""

import pytest

from atm_bench.data.generate import GenerateConfig, file_header
from atm_bench.envs.libero.suites import SUITES, get_task, list_tasks


@pytest.mark.parametrize("suite", SUITES)
def test_stored_and_evaluated_instructions_agree_for_every_task(suite):
    config = GenerateConfig(suite=suite, tasks=(0,), demos=1)
    for spec in list_tasks(suite):
        stored = file_header(suite, spec.index, config).problem_info["language_instruction"]
        assert stored == spec.instruction, (suite, spec.index)


def test_the_instruction_is_the_bddl_sentence_not_the_file_name():
    spec = get_task("libero_goal", 0)
    assert spec.name == "open_the_middle_drawer_of_the_cabinet"
    assert spec.instruction == "open the middle layer of the drawer"


def test_a_split_refuses_a_file_whose_instruction_is_another(tmp_path):
    from atm_bench.data.splits import make_split
    from atm_bench.errors import UserError
    from tests.atm_synthetic import write_task_file

    spec = get_task("libero_goal", 0)
    write_task_file(tmp_path / "libero_goal" / f"{spec.name}_demo.hdf5", instruction="open the middle drawer of the cabinet")
    with pytest.raises(UserError, match="not task 0's"):
        make_split(tmp_path, "libero_goal", labelled=1, tasks=[0])
