"""Benchmark: ``m2s score`` on 5 test sets × 3 methods × 100 maps — prints the wall time (target ≤ 30 s on 2 cores).

    OMP_NUM_THREADS=1 python benchmarks/score_maps.py                    # 352 × 352 maps, one worker per core
    python benchmarks/score_maps.py --size 512 --jobs 1 --n 50           # other sizes, one process

The ground truth (five sets named like the paper's, ``--n`` masks each: one or two ellipses of random size and
place) and three methods' 8-bit maps made from the masks (a blurred soft map, a dilated mask with noise, an eroded
mask) are written once under ``--data-dir``. The timed part is exactly ``m2s score`` with all outputs
(``m2s_lib.engine.score.score_maps``: reading, scoring under the PraNet protocol, per-image CSVs, the paired
comparison, the figure), into a fresh ``--out``.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

SETS = ("Kvasir", "CVC-ClinicDB", "CVC-ColonDB", "ETIS-LaribPolypDB", "CVC-300")
METHODS = ("blurred", "dilated-noisy", "eroded")
TARGET_SECONDS = 30.0


def make_data(root: Path, n: int, size: int, seed: int = 0) -> None:
    import numpy as np
    from PIL import Image
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for name in SETS:
        folder = root / "gt" / "TestDataset" / name
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(exist_ok=True)
        for i in range(n):
            mask = np.zeros((size, size), bool)
            for _ in range(rng.integers(1, 3)):
                cy, cx = rng.uniform(0.2, 0.8, 2) * size
                ry, rx = rng.uniform(0.04, 0.25, 2) * size
                mask |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            stem = f"{i + 1:04d}"
            Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "masks" / f"{stem}.png")
            Image.fromarray(np.stack([mask * 200 + 30] * 3, -1).astype(np.uint8)).save(folder / "images" / f"{stem}.jpg")
            maps = {
                "blurred": ndi.gaussian_filter(mask * 255.0, 4),
                "dilated-noisy": ndi.binary_dilation(mask, iterations=4) * 220.0 + rng.normal(0, 20, mask.shape),
                "eroded": ndi.binary_erosion(mask, iterations=3) * 255.0,
            }
            for method, values in maps.items():
                target = root / "maps" / method / name
                target.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8)).save(target / f"{stem}.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="maps per test set and method (default 100)")
    parser.add_argument("--size", type=int, default=352, help="map and mask side in pixels (default 352)")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--data-dir", default="runs/bench-score-maps", help="where the maps are generated (kept)")
    parser.add_argument("--out", default="runs/bench-score-maps/out", help="output folder (replaced)")
    args = parser.parse_args(argv)

    from m2s_lib.engine.score import score_maps

    root = Path(args.data_dir) / f"n{args.n}-{args.size}px"
    if not (root / "maps" / METHODS[-1] / SETS[-1] / f"{args.n:04d}.png").is_file():
        t0 = time.perf_counter()
        make_data(root, args.n, args.size)
        print(f"generated {len(SETS)} sets × {len(METHODS)} methods × {args.n} maps in {root} "
              f"({time.perf_counter() - t0:.1f} s, not timed)")
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    import resource

    def cpu_seconds() -> float:  # this process and its finished worker processes
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    t0, c0 = time.perf_counter(), cpu_seconds()
    result = score_maps(root / "gt", {m: root / "maps" / m for m in METHODS}, out, baseline=METHODS[0],
                        workers=args.jobs, progress=False, log=None)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    maps = int(result.results["n"].sum())
    print(f"m2s score: {len(SETS)} test sets × {len(METHODS)} methods × {args.n} maps = {maps} maps of "
          f"{args.size}×{args.size} px, protocol pranet, all outputs")
    print(f"wall time {wall:.1f} s ({maps / wall:.0f} maps/s) on {cores} cores, jobs={args.jobs or 'one per core'}, "
          f"1-min load average before the run {load:.1f}; Python {platform.python_version()}")
    print(f"CPU time {cpu:.1f} s in all processes ({1000 * cpu / maps:.1f} ms per map): the load-independent cost; "
          f"on 2 idle cores the wall time is about {cpu / min(2, cores or 1):.1f} s")
    print(f"target ≤ {TARGET_SECONDS:.0f} s on 2 cores: {'met' if wall <= TARGET_SECONDS else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
