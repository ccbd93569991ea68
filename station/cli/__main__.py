"""`python -m station.cli` runs the command line."""

from station.cli import main

main()
