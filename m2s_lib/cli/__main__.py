"""``python -m m2s_lib.cli`` (what ``torchrun -m m2s_lib.cli`` runs): the ``m2s`` command."""
from . import main

raise SystemExit(main())
