"""Hidden cases of notebook 03: the SU and AU pyramids, non-square inputs, float32, the paper wiring, train mode."""

HIDDEN = {
    "pyramid_order_tests": [
        {"name": "hidden: unit su, 64×96 input, float64, eval mode", "feeds": ("other units, sizes and dtypes",),
         "c": 8, "unit": "su", "wiring": "paper", "sizes": (1,), "hw": (64, 96), "dtype": "float64", "mode": "eval"},
        {"name": "hidden: unit au, 64×64 input, float32, train mode", "feeds": ("other units, sizes and dtypes",),
         "c": 8, "unit": "au", "wiring": "paper", "sizes": (1,), "hw": (64, 64), "dtype": "float32", "mode": "train"},
        {"name": "hidden: unit msu (1, 3), 96×64 input, float64, train mode",
         "feeds": ("other units, sizes and dtypes",), "c": 6, "unit": "msu", "wiring": "paper", "sizes": (1, 3),
         "hw": (96, 64), "dtype": "float64", "mode": "train"},
    ],
    "ce_sums_tests": [
        {"name": "hidden: official wiring, unit su, 64×96, float64, train mode",
         "feeds": ("other units, sizes and dtypes",), "c": 8, "unit": "su", "wiring": "official", "sizes": (1, 3),
         "hw": (64, 96), "dtype": "float64", "mode": "train", "n": 1},
        {"name": "hidden: paper wiring, unit msu, 96×64, float64, eval mode",
         "feeds": ("other units, sizes and dtypes",), "c": 8, "unit": "msu", "wiring": "paper", "sizes": (1, 3),
         "hw": (96, 64), "dtype": "float64", "mode": "eval", "n": 1},
        {"name": "hidden: paper wiring, unit au, 64×64, float32, train mode",
         "feeds": ("other units, sizes and dtypes",), "c": 4, "unit": "au", "wiring": "paper", "sizes": (1, 3),
         "hw": (64, 64), "dtype": "float32", "mode": "train", "n": 1},
    ],
}
