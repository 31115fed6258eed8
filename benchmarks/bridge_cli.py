"""`stripe-bridge` for whichever ref a run measures (`--ref`): the entry point moved in 0.8.0
(`stripe_bridge/cli.py` → `stripe_bridge/cli/main.py`), and the console script of the venv
knows only the working tree's."""

import sys

try:
    from stripe_bridge.cli.main import main
except ImportError:  # a ref before 0.8.0
    from stripe_bridge.cli import main  # type: ignore[attr-defined,no-redef]

sys.exit(main())
