"""Every case of the bad-input catalogue stops with its message, without a traceback from our commands (inside
nnU-Net's own commands: a traceback whose last line is our message), and leaves every file as it was."""
import pytest

from bad_input_catalogue import CASES, build_workspace, run_case


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return build_workspace(tmp_path_factory.mktemp("bad_inputs"), log=lambda line: None)


def test_catalogue_is_large_and_names_are_unique():
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_a_clear_error_and_changes_nothing(case, workspace):
    outcome = run_case(case, workspace)
    assert outcome.returncode != 0, outcome.output[-3000:]
    assert case.expect in outcome.message, outcome.output[-3000:]
    if not case.command.startswith("nnUNetv2_"):  # our own commands: one error line, no traceback, exit 2
        assert not outcome.traceback and outcome.returncode == 2, outcome.output[-3000:]
        assert outcome.message.startswith("error: ") or "error: argument" in outcome.message, outcome.message
    assert outcome.changed == [], outcome.changed
