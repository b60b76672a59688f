"""slip-eval run in-process as a user runs it, for the tests of its error handling."""

import sys
from unittest import mock

import pytest

from slip_eval.cli import main


def slip_eval(*args) -> int:
    """The command as a user runs it (entry.py's error handling included): its exit status."""
    with (
        mock.patch.object(sys, "argv", ["slip-eval", *map(str, args)]),
        pytest.raises(SystemExit) as exit_,
    ):
        main()
    return exit_.value.code
