"""Write a synthetic dataset (thin wrapper over ``m2s data synth``; same options).

    python data_scripts/make_synthetic.py --task polyp --n 1000 --out data/synthetic-polyp
    python data_scripts/make_synthetic.py --task busi --n 780 --out data/synthetic-busi --seed 1
"""
from __future__ import annotations

import sys

from m2s_lib.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["data", "synth", *sys.argv[1:]]))
