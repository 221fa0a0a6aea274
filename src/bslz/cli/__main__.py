"""`python -m bslz.cli ...` runs the `bslz` command."""

from bslz.cli.commands import main

if __name__ == "__main__":
    main(prog_name="bslz")
