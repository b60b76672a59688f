"""`python -m slip_train`: the same as the `slip-train` command."""

from slip_train.cli import main

main()
