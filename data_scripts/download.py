"""Download / verify / list the real datasets (thin wrapper over ``m2s data download|verify|list``).

    python data_scripts/download.py download polyp --root data/polyp
    python data_scripts/download.py download goals --root data/goals --source ~/Downloads/GOALS2022-Train.zip
    python data_scripts/download.py verify polyp --root data/polyp
    python data_scripts/download.py list
"""
from __future__ import annotations

import sys

from m2s_lib.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["data", *sys.argv[1:]]))
