"""`python -m owngpt` runs the CLI."""

from owngpt.cli import main

main()
