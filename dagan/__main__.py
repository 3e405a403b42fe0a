"""Allow ``python -m dagan`` (and ``torchrun -m dagan``)."""

from dagan.cli import main

raise SystemExit(main())
