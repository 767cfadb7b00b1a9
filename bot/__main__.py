"""``python -m bot`` is the same as the ``factory-bridge`` console script."""

from bot.cli import main

raise SystemExit(main())
