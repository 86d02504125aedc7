"""`python -m specc`: the same as the `specc` command."""

from specc.cli import main

main()
