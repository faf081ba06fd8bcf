"""``python -m amint``: see amint/cli.py."""

from .cli import main

raise SystemExit(main())
