"""`python -m crystaldb` is the same as the `crystaldb` command."""

from crystaldb.cli import main

main()
