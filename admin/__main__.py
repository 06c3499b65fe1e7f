"""`python -m admin` = the `durablechat` command."""

from admin.cli import main

main()
