"""`python -m lookalike`: the `lookalike` command."""

from lookalike.cli.main import main

main()
