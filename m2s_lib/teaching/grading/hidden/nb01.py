"""Hidden cases of notebook 01: odd and non-square sizes, float64, another up-sampling factor, other widths."""

HIDDEN = {
    "su_forward_tests": [
        {"name": "hidden: 8 channels, 3×5 → 7×9, float64, eval mode", "feeds": ("odd sizes", "dtype"), "c": 8,
         "n": 3, "a": (3, 5), "b": (7, 9), "dtype": "float64", "mode": "eval"},
        {"name": "hidden: 8 channels, 3×5 → 7×9, float64, train mode", "feeds": ("odd sizes", "dtype"), "c": 8,
         "n": 3, "a": (3, 5), "b": (7, 9), "dtype": "float64", "mode": "train"},
        {"name": "hidden: 5 channels, 6×6 → 6×6 (nothing to up-sample), eval mode", "feeds": ("odd sizes",),
         "c": 5, "n": 2, "a": (6, 6), "b": (6, 6), "dtype": "float32", "mode": "eval"},
        {"name": "hidden: 16 channels, 2×4 → 8×16 (factor 4), train mode", "feeds": ("odd sizes",), "c": 16,
         "n": 1, "a": (2, 4), "b": (8, 16), "dtype": "float32", "mode": "train"},
    ],
    "su_param_count_tests": [
        {"name": f"hidden: C = {c}", "feeds": ("other widths",), "c": c} for c in (1, 3, 32, 100)
    ],
    "fusion_parts_tests": [
        {"name": "hidden: equal maps (difference 0)", "feeds": ("edge cases and float32",), "shape": (2, 3, 5, 7),
         "dtype": "float32", "kind": "equal"},
        {"name": "hidden: one map zero (shared part 0)", "feeds": ("edge cases and float32",),
         "shape": (2, 3, 5, 7), "dtype": "float32", "kind": "zero"},
        {"name": "hidden: float32, 1×1×9×4", "feeds": ("edge cases and float32",), "shape": (1, 1, 9, 4),
         "dtype": "float32", "kind": "scaled"},
    ],
}
