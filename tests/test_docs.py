"""Runs every code block of README.md and docs/*.md, and builds the site.

What happens to a fenced block, by its language:

* ```python: executed, one test per block, named by file and line. The blocks
  of one page run in order in one namespace (later blocks use earlier names),
  in a temporary working directory of their own. Every `fit` runs at most
  `KERAS_PPO_DOCS_EPOCHS` epochs (2 unless set), so a page can say
  `epochs=100` as a reader would write it while the suite stays fast.
* ```bash / ```console: each command is checked, not run: `keras-ppo ...`
  against its subcommand's `--help` (the subcommand exists and knows every
  `--flag` the line uses); `pip install` lines are left alone; any other
  program must be on PATH, and `python FILE` must name a file of this
  repository.
* ```text, ```json, ```yaml, ```toml: shown only. An unlabelled fence fails
  the collection, so no runnable block hides as plain text.

A block that must not run carries `<!-- no-run: reason -->` on the line
before it; such blocks stay rare (`MAX_NO_RUN`).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUN_LANGUAGES = {"python": "python", "py": "python", "bash": "shell"}
RUN_LANGUAGES |= {"console": "shell", "sh": "shell", "shell": "shell"}
SHOWN_LANGUAGES = {"text", "json", "yaml", "toml"}
MAX_NO_RUN = 6
EPOCHS_VARIABLE = "KERAS_PPO_DOCS_EPOCHS"

FENCE = re.compile(r"^(?P<indent>\s*)```(?P<language>[\w-]*)\s*$")
NO_RUN = re.compile(r"^\s*<!--\s*no-run:\s*(?P<reason>\S.*?)\s*-->\s*$")


class Block(NamedTuple):
    """One fenced code block of a Markdown page."""

    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    no_run: str | None  # the reason given by a no-run marker

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    """The fenced blocks of `page`, in order.

    Raises:
        ValueError: If a fence is left open or a no-run marker is followed by
            no block.
    """
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, index = [], 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            marker = NO_RUN.match(lines[index])
            if marker and not _next_is_fence(lines, index):
                raise ValueError(f"{page}:{index + 1}: a no-run marker without a block")
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not FENCE.match(lines[end]):
            end += 1
        if end == len(lines):
            raise ValueError(f"{page}:{index + 1}: a code fence is never closed")
        before = lines[index - 1] if index else ""
        marker = NO_RUN.match(before)
        code = textwrap.dedent("\n".join(lines[index + 1 : end]))
        language = opening.group("language").lower()
        reason = marker.group("reason") if marker else None
        blocks.append(Block(page, index + 1, language, code, reason))
        index = end + 1
    return blocks


def _next_is_fence(lines, index):
    return index + 1 < len(lines) and bool(FENCE.match(lines[index + 1]))


ALL_BLOCKS = [block for page in PAGES for block in blocks_of(page)]


def runnable(kind):
    """The blocks of `kind` ("python" or "shell") that are not marked no-run."""
    return [
        block
        for block in ALL_BLOCKS
        if RUN_LANGUAGES.get(block.language) == kind and block.no_run is None
    ]


def params(blocks):
    return [pytest.param(block, id=block.name) for block in blocks]


# ---------------------------------------------------------------------------
# The collection itself


def test_every_block_is_run_shown_or_marked_no_run():
    unlabelled = [b.name for b in ALL_BLOCKS if not b.language]
    assert unlabelled == [], "fences need a language (python, bash, text, ...)"
    unknown = [
        (b.name, b.language)
        for b in ALL_BLOCKS
        if b.language not in RUN_LANGUAGES and b.language not in SHOWN_LANGUAGES
    ]
    assert unknown == []
    executed = len(runnable("python")) + len(runnable("shell"))
    marked = [b for b in ALL_BLOCKS if b.no_run is not None]
    runnable_blocks = [b for b in ALL_BLOCKS if b.language in RUN_LANGUAGES]
    assert executed + len(marked) == len(runnable_blocks)
    assert len(marked) <= MAX_NO_RUN, [b.name for b in marked]


def test_the_collector_finds_fences_markers_and_their_lines(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n```python\nx = 1\n```\n\n<!-- no-run: needs a GPU -->\n"
        "```bash\n  keras-ppo train\n```\n\n```text\nshown\n```\n"
    )
    first, second, third = blocks_of(page)
    assert (first.line, first.language, first.code, first.no_run) == (
        3,
        "python",
        "x = 1",
        None,
    )
    assert (second.line, second.code, second.no_run) == (
        8,
        "keras-ppo train",
        "needs a GPU",
    )
    assert (third.language, third.code) == ("text", "shown")


def test_the_collector_rejects_an_open_fence_and_a_stray_marker(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```python\nx = 1\n")
    with pytest.raises(ValueError, match="never closed"):
        blocks_of(page)
    page.write_text("<!-- no-run: why -->\n\ntext\n")
    with pytest.raises(ValueError, match="without a block"):
        blocks_of(page)


# ---------------------------------------------------------------------------
# Python blocks


class PageRun:
    """The namespace and working directory that one page's blocks share."""

    def __init__(self, workdir: Path):
        self.namespace = {"__name__": "__docs__"}
        self.workdir = workdir
        self.done = 0  # blocks of the page already run
        self.failed = None  # the name of a block that raised


_PAGE_RUNS: dict[Path, PageRun] = {}


@pytest.fixture
def capped_fit(monkeypatch):
    """Caps every `fit`'s epochs at `KERAS_PPO_DOCS_EPOCHS` (default 2).

    `PPOModel.fit` and `AgentStack.fit` end in `keras.Model.fit`, so the cap
    reaches them and Keras' own models alike.
    """
    import keras

    cap = int(os.environ.get(EPOCHS_VARIABLE, "2"))
    original = keras.Model.fit

    def fit(self, *args, epochs=1, **kwargs):
        return original(self, *args, epochs=min(epochs, cap), **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit)
    return cap


def test_capped_fit_caps_the_epochs_of_any_keras_model(capped_fit):
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(loss="mse")
    x = np.zeros((4, 1), np.float32)
    history = model.fit(x, x, epochs=capped_fit + 3, verbose=0)
    assert len(history.history["loss"]) == capped_fit
    history = model.fit(x, x, epochs=1, verbose=0)
    assert len(history.history["loss"]) == 1


def _run_python(block: Block, run: PageRun):
    try:
        code = compile(block.code, block.name, "exec")
        exec(code, run.namespace)  # noqa: S102 - the docs' own examples
    except BaseException:
        run.failed = block.name
        raise


@pytest.mark.parametrize("block", params(runnable("python")))
def test_python_block_runs(block, capped_fit, tmp_path_factory, monkeypatch):
    page_blocks = [b for b in runnable("python") if b.page == block.page]
    run = _PAGE_RUNS.get(block.page)
    if run is None:
        run = _PAGE_RUNS[block.page] = PageRun(tmp_path_factory.mktemp("docs"))
    monkeypatch.chdir(run.workdir)
    position = page_blocks.index(block)
    # Run the blocks before this one first, if they have not run (as when
    # one block is selected with -k).
    while run.done <= position:
        if run.failed is not None:
            pytest.fail(f"an earlier block of the page failed: {run.failed}")
        _run_python(page_blocks[run.done], run)
        run.done += 1


# ---------------------------------------------------------------------------
# Shell blocks


def commands_of(code: str) -> list[list[str]]:
    """The simple commands of a shell block, as argument lists.

    Lines ending in a backslash or inside an open quote continue; `#`
    comments, `&&`, `||`, `;` and `|` separate or end commands, and leading
    `NAME=value` assignments are dropped.
    """
    commands, pending = [], ""
    for line in code.splitlines():
        pending = f"{pending}\n{line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        try:
            lexer = shlex.shlex(pending, posix=True, punctuation_chars=";&|")
            lexer.whitespace_split = True
            lexer.commenters = "#"
            tokens = list(lexer)
        except ValueError:  # an open quote: the command goes on
            continue
        pending = ""
        command = []
        for token in [*tokens, ";"]:
            if token in {"&&", "||", ";", "|", "&"}:
                while command and re.match(r"^\w+=", command[0]):
                    command.pop(0)
                if command:
                    commands.append(command)
                command = []
            else:
                command.append(token)
    assert not pending, f"an unfinished command: {pending!r}"
    return commands


def test_commands_of_splits_joins_and_drops_assignments():
    code = (
        "# comment\n"
        'pip install ".[test]" && pytest  # both\n'
        "TF_CONFIG='{\"a\":\n 1}' \\\n  keras-ppo train --workers 2\n"
    )
    assert commands_of(code) == [
        ["pip", "install", ".[test]"],
        ["pytest"],
        ["keras-ppo", "train", "--workers", "2"],
    ]


_HELP: dict[str, str] = {}


def help_of(subcommand: str | None) -> str:
    """`keras-ppo [subcommand] --help`'s output (it loads no TensorFlow)."""
    if subcommand not in _HELP:
        argv = [sys.executable, "-m", "keras_ppo.cli"]
        argv += [subcommand, "--help"] if subcommand else ["--help"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (argv, done.stderr)
        _HELP[subcommand] = done.stdout
    return _HELP[subcommand]


def check_keras_ppo(arguments: list[str]):
    """Asserts that the subcommand exists and knows every flag used."""
    global_flags = {"-v", "--verbose", "-h", "--help"}
    rest = list(arguments)
    used_globals = []
    while rest and rest[0] in global_flags:
        used_globals.append(rest.pop(0))
    for flag in used_globals:
        assert flag in help_of(None), flag
    if not rest:
        return
    subcommand = rest[0]
    assert re.search(rf"\b{re.escape(subcommand)}\b", help_of(None)), subcommand
    text = help_of(subcommand)
    for token in rest[1:]:
        if token.startswith("-"):
            flag = token.split("=", 1)[0]
            assert re.search(rf"(^|[\s,\[]){re.escape(flag)}\b", text), (
                f"keras-ppo {subcommand} has no {flag}"
            )


def check_command(command: list[str]):
    program = command[0]
    if program == "keras-ppo":
        check_keras_ppo(command[1:])
    elif program == "pip":
        assert command[1] == "install", command  # install lines are not run
    elif program in {"python", "python3"}:
        script = next((a for a in command[1:] if not a.startswith("-")), None)
        if script and script.endswith(".py"):
            assert (ROOT / script).is_file(), script
    else:
        # The interpreter's own bin folder first: a venv's scripts, even
        # when the venv is not activated.
        path = os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])
        assert shutil.which(program, path=path), f"{program} is not installed"


@pytest.mark.parametrize("block", params(runnable("shell")))
def test_shell_block_is_checked(block):
    commands = commands_of(block.code)
    assert commands, f"{block.name}: no command"
    for command in commands:
        check_command(command)


def test_a_flag_keras_ppo_lacks_is_caught():
    with pytest.raises(AssertionError, match="no --no-such-flag"):
        check_keras_ppo(["train", "CartPole-v1", "--no-such-flag", "1"])
    check_keras_ppo(["train", "CartPole-v1", "--total-timesteps=1000"])


# ---------------------------------------------------------------------------
# The command-line reference: the live --help of each subcommand

CLI_PAGE = ROOT / "docs" / "api" / "cli.md"
CLI_INTRO = """# Command line

The `keras-ppo` command's `--help`, for the command and each subcommand.
The [command-line guide](../guides/command-line.md) shows them at work.
`tests/test_docs.py` compares each block below with the live output (at
`COLUMNS=80`); `python tests/test_docs.py --write-cli` rewrites the page.
"""


def cli_page() -> str:
    """The command-line reference page as the live `--help` outputs make it."""
    env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": str(ROOT)}

    def help_text(*words):
        argv = [sys.executable, "-m", "keras_ppo.cli", *words, "--help"]
        done = subprocess.run(argv, capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    top = help_text()
    # The usage line lists the subcommands: "{train,evaluate,...}".
    subcommands = re.search(r"\{([\w,-]+)\}", top).group(1).split(",")
    sections = [CLI_INTRO]
    for name in [None, *subcommands]:
        title = f"keras-ppo {name} --help" if name else "keras-ppo --help"
        text = help_text(name) if name else top
        sections.append(f"## `{title}`\n\n```text\n{text}```\n")
    return "\n".join(sections)


def test_the_command_line_reference_is_the_live_help():
    assert CLI_PAGE.read_text(encoding="utf-8") == cli_page(), (
        "regenerate docs/api/cli.md: python tests/test_docs.py --write-cli"
    )


# ---------------------------------------------------------------------------
# Links, the README's promises and the site


def test_readme_starts_with_the_two_set_up_commands_and_stays_short():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first = next(b for b in blocks_of(ROOT / "README.md"))
    assert first.language == "bash"
    lines = first.code.splitlines()
    commands = [line for line in lines if line.strip() and not line.startswith("#")]
    assert commands[:2] == [
        "pip install . && keras-ppo train",
        'pip install ".[test]" && pytest',
    ]
    assert len(text.splitlines()) <= 210


def test_readme_links_point_to_files_that_exist():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not re.match(r"^[a-z]+://", t)]
    assert local, "the README links into the docs"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert missing == []


def test_version_is_the_package_metadata():
    import keras_ppo

    assert keras_ppo.__version__ == importlib.metadata.version("keras-ppo")


def test_version_of_a_source_tree_that_is_not_installed():
    # Simulated by a metadata look-up that finds nothing, in a fresh process.
    code = (
        "import importlib.metadata as m\n"
        "def missing(name): raise m.PackageNotFoundError(name)\n"
        "m.version = missing\n"
        "import keras_ppo; print(keras_ppo.__version__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0+unknown"


def mkdocs_build(config: Path, site: Path):
    # The test extra installs both: a missing one is a failure, not a skip.
    import mkdocs  # noqa: F401
    import mkdocstrings_handlers.python  # noqa: F401

    argv = [sys.executable, "-m", "mkdocs", "build", "--strict"]
    argv += ["-f", str(config), "-d", str(site)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=300, env=env, cwd=config.parent
    )


def test_the_site_builds_strictly(tmp_path):
    done = mkdocs_build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    api = (tmp_path / "site" / "api" / "model" / "index.html").read_text()
    assert "export_policy" in api  # mkdocstrings rendered the docstrings
    # docs/hooks.py serves the benchmark plots from benchmarks/results.
    plots = sorted(p.name for p in (ROOT / "benchmarks" / "results").glob("*.png"))
    served = tmp_path / "site" / "img" / "benchmarks"
    assert plots and sorted(p.name for p in served.glob("*.png")) == plots
    # docs/griffe_examples.py: `Example:` sections are code, so the comment in
    # ClipRatioScheduler's `>>> # Linear annealing ...` is no heading.
    callbacks = (tmp_path / "site" / "api" / "callbacks" / "index.html").read_text()
    assert "Linear annealing" in callbacks
    assert not re.search(r"<h\d[^>]*>Linear annealing", callbacks)


def test_a_broken_link_or_a_page_outside_the_nav_fails_the_build(tmp_path):
    # The same configuration over a copy of the docs, first as it is (it
    # builds), then with a page outside the nav, then with a broken link.
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copy(ROOT / "CHANGELOG.md", tmp_path / "CHANGELOG.md")
    for shared in ("keras_ppo", "benchmarks"):
        (tmp_path / shared).symlink_to(ROOT / shared)
    config, site = tmp_path / "mkdocs.yml", tmp_path / "site"
    done = mkdocs_build(config, site)
    assert done.returncode == 0, done.stdout + done.stderr
    (tmp_path / "docs" / "orphan.md").write_text("# Orphan\n")
    done = mkdocs_build(config, site)
    assert done.returncode != 0
    assert "orphan.md" in done.stdout + done.stderr
    (tmp_path / "docs" / "orphan.md").unlink()
    index = tmp_path / "docs" / "index.md"
    index.write_text(index.read_text() + "\n[gone](no-such-page.md)\n")
    done = mkdocs_build(config, site)
    assert done.returncode != 0
    assert "no-such-page.md" in done.stdout + done.stderr


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-cli"]:
        CLI_PAGE.write_text(cli_page(), encoding="utf-8")
    else:
        sys.exit("usage: python tests/test_docs.py --write-cli")
