"""`python -m lookalike.cli`: the `lookalike` command."""

from lookalike.cli.main import main

main()
