"""`python -m nascli` runs the `nas` command."""

from nascli.cli import main

main()
