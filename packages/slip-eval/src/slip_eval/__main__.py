"""`python -m slip_eval`: the same as the `slip-eval` command."""

from slip_eval.cli import main

main()
