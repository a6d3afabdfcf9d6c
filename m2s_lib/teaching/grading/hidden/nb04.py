"""Hidden cases of notebook 04: another width (E^1 reduced too), other input sizes, train mode, two classes,
float64."""

_ENC = ("encoder levels E^1 … E^5", "reduced levels MS_1^1 … MS_1^5")
_DEC = ("CE^5 from the top level", "decoder stages D4, D3, D2", "head D1", "logits at the input's size")

HIDDEN = {
    "encode_tests": [
        {"name": "hidden: width 64, two 96×64 images", "feeds": _ENC, "width": 64, "shape": (2, 3, 96, 64),
         "dtype": "float32", "mode": "eval"},
        {"name": "hidden: width 16, 64×96 input", "feeds": ("another width (E^1 needs a reduction too)",),
         "width": 16, "shape": (2, 3, 64, 96), "dtype": "float32", "mode": "eval"},
        {"name": "hidden: width 16, train mode, 96×64", "feeds": ("train mode and float64",), "width": 16,
         "shape": (2, 3, 96, 64), "dtype": "float32", "mode": "train"},
        {"name": "hidden: width 16, float64, 64×64", "feeds": ("train mode and float64",), "width": 16,
         "shape": (1, 3, 64, 64), "dtype": "float64", "mode": "eval"},
    ],
    "decode_tests": [
        {"name": "hidden: width 64, two 96×64 images", "feeds": _DEC, "width": 64, "classes": 1, "n": 2,
         "size": (96, 64), "dtype": "float32", "mode": "eval"},
        {"name": "hidden: width 16, two classes, 64×96", "feeds": ("two classes, train mode, odd sizes, float64",),
         "width": 16, "classes": 2, "n": 2, "size": (64, 96), "dtype": "float32", "mode": "eval"},
        {"name": "hidden: width 16, train mode, 96×72", "feeds": ("two classes, train mode, odd sizes, float64",),
         "width": 16, "classes": 1, "n": 2, "size": (96, 72), "dtype": "float32", "mode": "train"},
        {"name": "hidden: width 16, float64, 70×50", "feeds": ("two classes, train mode, odd sizes, float64",),
         "width": 16, "classes": 1, "n": 1, "size": (70, 50), "dtype": "float64", "mode": "eval"},
    ],
}
