"""`python -m nudgeflow.cli`: the `nudgeflow` command."""

from nudgeflow.cli import main

main()
