"""Executes the notebooks in notebooks/ so that they never rot."""

import json
import os
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
KERNEL = "keras-ppo-tests"
#: Caps the epochs of every `fit` in the notebooks that `execute` caps.
EPOCHS_VARIABLE = "KERAS_PPO_NOTEBOOK_EPOCHS"


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    """A kernel running this interpreter. The `python3` kernelspec that
    ipykernel installs starts whichever `python` is first on PATH, which need
    not be the one keras_ppo is installed in."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel_json = {"argv": argv, "display_name": KERNEL, "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel_json))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return KERNEL


def execute(name, workdir, kernel, max_epochs=None):
    """Runs every cell in `workdir`; raises CellExecutionError on an error.

    With `max_epochs`, a first cell (not the notebook's) caps the epochs of
    every `keras.Model.fit`, as tests/test_docs.py caps the docs' code: the
    notebook reads as a reader would run it at full length.
    """
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    if max_epochs is not None:
        notebook.cells.insert(0, nbformat.v4.new_code_cell(_capped_fit(max_epochs)))
    client = nbclient.NotebookClient(
        notebook,
        timeout=120,
        kernel_name=kernel,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    return notebook


def _capped_fit(max_epochs):
    return (
        "import keras\n"
        "_fit = keras.Model.fit\n"
        "def _capped(self, *args, epochs=1, **kwargs):\n"
        f"    return _fit(self, *args, epochs=min(epochs, {max_epochs}), **kwargs)\n"
        "keras.Model.fit = _capped\n"
    )


def text_of(cell):
    """The printed and displayed text of a code cell."""
    parts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            parts.append(output["text"])
        elif "data" in output:
            parts.append(output["data"].get("text/plain", ""))
    return "".join(parts)


def plots_of(notebook):
    """The PNG images the notebook's cells display."""
    return [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]


def one_cell_matching(notebook, pattern):
    """The match of `pattern` in the only code cell whose output has it."""
    matches = [
        match
        for cell in notebook.cells
        if cell.cell_type == "code"
        for match in [re.search(pattern, text_of(cell))]
        if match
    ]
    assert len(matches) == 1, (pattern, [text_of(c) for c in notebook.cells])
    return matches[0]


@pytest.mark.parametrize(
    "name",
    [
        "quickstart.ipynb",
        "custom_env.ipynb",
        "masking.ipynb",
        "recurrent.ipynb",
        "multi_agent.ipynb",
        "demonstrations.ipynb",
    ],
)
def test_notebooks_are_stored_without_outputs(name):
    # Outputs would go stale and bloat diffs: the tests execute the notebooks.
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_quickstart_trains_saves_and_evaluates(tmp_path, kernel):
    notebook = execute("quickstart.ipynb", tmp_path, kernel)
    one_cell_matching(notebook, r"Trained 25600 env steps")
    match = one_cell_matching(
        notebook, r"Evaluation over 10 episodes: return ([\d.]+) \+- [\d.]+"
    )
    # An untrained policy balances for about 10-40 steps.
    assert float(match.group(1)) >= 100
    assert len(plots_of(notebook)) == 1
    assert (tmp_path / "agent.keras").is_file()
    assert list((tmp_path / "runs" / "quickstart" / "train").glob("events.out.*"))
    one_cell_matching(notebook, r"array\(\[[01]\]")  # predict_action's output


def test_custom_env_notebook_learns_to_reach_the_goal(tmp_path, kernel):
    notebook = execute("custom_env.ipynb", tmp_path, kernel)
    # hidden_sizes=(32, 32): two 2-32-32 trunks, 3 logits, 1 value, rng etc.
    params = int(one_cell_matching(notebook, r"(\d+) parameters").group(1))
    trunks = 2 * (2 * 32 + 32 + 32 * 32 + 32)
    assert trunks + (32 * 3 + 3) + (32 + 1) <= params < trunks + 200
    pattern = r"{}: return (-?[\d.]+), .* reached the goal in (\d+) of 20 episodes"
    before = one_cell_matching(notebook, pattern.format("Untrained"))
    after = one_cell_matching(notebook, pattern.format("Trained"))
    assert float(after.group(1)) > float(before.group(1))
    assert int(after.group(2)) > int(before.group(2))
    assert int(after.group(2)) >= 15


def test_masking_notebook_trains_a_masked_dict_observation_env(tmp_path, kernel):
    notebook = execute("masking.ipynb", tmp_path, kernel)
    one_cell_matching(notebook, r"Trained 15360 env steps")
    before = float(one_cell_matching(notebook, r"before training: ([\d.]+)").group(1))
    after = float(one_cell_matching(notebook, r"after training: ([\d.]+)").group(1))
    # A random legal card earns about 5 per game, the best legal one about 7.7.
    assert before < 6.0 < 6.5 < after
    # Slot 3 (a 3) beats slot 2 (a 1); slots 0 and 1 (fives) are masked.
    one_cell_matching(notebook, r"Chosen slot: 3")
    one_cell_matching(notebook, r"With slot 0 allowed: 0")
    one_cell_matching(notebook, r"Served slot: 3")


def test_recurrent_notebook_solves_a_task_that_needs_memory(tmp_path, kernel):
    notebook = execute("recurrent.ipynb", tmp_path, kernel)
    recurrent = float(
        one_cell_matching(notebook, r"gru: mean return ([\d.]+)").group(1)
    )
    feed_forward = float(
        one_cell_matching(notebook, r"feed-forward: mean return ([\d.]+)").group(1)
    )
    assert recurrent >= 0.95 and feed_forward <= 0.75
    one_cell_matching(notebook, r"last action \d, return 1.0")


def test_multi_agent_notebook_shares_a_policy_and_plays_itself(tmp_path, kernel):
    # The notebook trains 100 iterations of each task; 3 show that it runs.
    epochs = int(os.environ.get(EPOCHS_VARIABLE, "3"))
    notebook = execute("multi_agent.ipynb", tmp_path, kernel, max_epochs=epochs)
    # 32 copies x 3 agents x 25 steps per iteration.
    one_cell_matching(notebook, rf"Trained {epochs * 2400} agent steps \(96 slots\)")
    one_cell_matching(notebook, r"Random policy: return -[\d.]+ per agent")
    one_cell_matching(notebook, r"Trained policy: return -[\d.]+ per agent")
    one_cell_matching(notebook, r"agent_0 moves: [0-4]\b")  # simple_spread's 5 moves
    one_cell_matching(notebook, r"Same action as before saving: True")
    assert (tmp_path / "spread.keras").is_file()

    # 16 copies x 64 moves per iteration; a snapshot at the start and every
    # 10 iterations, at most 8 kept.
    one_cell_matching(notebook, rf"Trained {epochs * 1024} moves")
    pool = min(1 + epochs // 10, 8)
    one_cell_matching(notebook, rf"Snapshots in the pool: {pool}\n")
    one_cell_matching(notebook, rf"Snapshots in the loaded pool: {pool}\n")
    rates = one_cell_matching(
        notebook, r"against the pool: win ([\d.]+), draw ([\d.]+), loss ([\d.]+)"
    )
    assert sum(float(rate) for rate in rates.groups()) == pytest.approx(1, abs=0.02)
    for player in ("random", "lookahead", "the centre player"):
        match = one_cell_matching(
            notebook,
            rf"Against {player}: win ([\d.]+), draw ([\d.]+), loss ([\d.]+) "
            r"\((\d+) games\)",
        )
        *rates, games = match.groups()
        assert sum(float(rate) for rate in rates) == pytest.approx(1, abs=0.02)
        assert int(games) >= 200
    one_cell_matching(notebook, r"First move, column: [0-6]\b")
    assert len(plots_of(notebook)) == 1
    assert (tmp_path / "four.keras").is_file()


def test_demonstrations_notebook_clones_then_fine_tunes_under_the_penalty(
    tmp_path, kernel
):
    # Four epochs of every fit (the notebook runs 30 PPO iterations): the
    # first ones, where an unpenalised fine-tuning can forget.
    epochs = int(os.environ.get(EPOCHS_VARIABLE, "4"))
    notebook = execute("demonstrations.ipynb", tmp_path, kernel, max_epochs=epochs)
    one_cell_matching(notebook, r"Demonstrator: 2 episodes, 1000 steps, return 500.0")
    cloned = one_cell_matching(notebook, r"Cloned policy: return ([\d.]+)")
    # Cloning two episodes reaches the demonstrator (an untrained policy
    # balances for about 10-40 steps).
    assert float(cloned.group(1)) >= 450
    penalised = one_cell_matching(
        notebook, r"PPO \+ KL penalty: lowest evaluation ([\d.]+), final ([\d.]+)"
    )
    assert float(penalised.group(1)) >= 450
    one_cell_matching(notebook, r"PPO: lowest evaluation [\d.]+, final [\d.]+")
    assert len(plots_of(notebook)) == 1
    one_cell_matching(notebook, r"Reference is the cloned policy: True")
    assert (tmp_path / "fine-tuned.keras").is_file()
