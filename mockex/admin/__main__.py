"""`python -m mockex.admin COMMAND ...`; `--help` lists the commands."""

import sys

from mockex.admin.cli import main

if __name__ == "__main__":
    sys.exit(main())
