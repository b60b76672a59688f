"""`python -m slip_data` is the `slip-data` command."""

from slip_data.cli import main

main()
