"""Hidden cases of notebook 02: float32, other channel counts and shapes, a box wider than the map, other kernel
sets (one scale, Table 11's widest, no k = 1 term), both modes and dtypes."""

HIDDEN = {
    "full_one_dense_tests": [
        {"name": "hidden: float32, C = 3, 11×17, k = 7", "feeds": ("other shapes and float32",),
         "shape": (3, 3, 11, 17), "dtype": "float32", "k": 7},
        {"name": "hidden: 1×5×4×4 map, k = 5", "feeds": ("other shapes and float32",), "shape": (1, 5, 4, 4),
         "dtype": "float64", "k": 5},
    ],
    "full_one_fast_tests": [
        {"name": "hidden: 3×3×13×9, k = 9 (box wider than the map)", "feeds": ("wide boxes and float32",),
         "shape": (3, 3, 13, 9), "dtype": "float64", "k": 9},
        {"name": "hidden: float32, C = 6, 10×21, k = 5", "feeds": ("wide boxes and float32",),
         "shape": (2, 6, 10, 21), "dtype": "float32", "k": 5},
    ],
    "msu_forward_tests": [
        {"name": "hidden: kernels (1,), 3×5 → 7×9, float64, eval mode", "feeds": ("other kernel sets", "dtype"),
         "c": 8, "sizes": (1,), "a": (3, 5), "b": (7, 9), "dtype": "float64", "mode": "eval"},
        {"name": "hidden: kernels (1, 3), 4×4 → 8×8, float32, train mode", "feeds": ("other kernel sets", "dtype"),
         "c": 8, "sizes": (1, 3), "a": (4, 4), "b": (8, 8), "dtype": "float32", "mode": "train"},
        {"name": "hidden: kernels (1, 3, 5, 7), 5×3 → 10×6, float64, train mode", "feeds": ("other kernel sets",),
         "c": 6, "sizes": (1, 3, 5, 7), "a": (5, 3), "b": (10, 6), "dtype": "float64", "mode": "train"},
        {"name": "hidden: kernels (3, 5), 6×6 → 6×6, float64, eval mode", "feeds": ("other kernel sets",),
         "c": 4, "sizes": (3, 5), "a": (6, 6), "b": (6, 6), "dtype": "float64", "mode": "eval"},
    ],
}
