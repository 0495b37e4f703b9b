"""What the command-line tests share."""

import pytest

from keras_ppo.cli import main


def run_failing(argv, capsys):
    """Runs `main(argv)`, expects argparse's exit code 2, returns stderr."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err
