"""Hidden cases of notebook 07: a random map of odd size, a flat map, a perfect map, an empty mask."""

_EDGES = "flat map, perfect map, empty mask"

HIDDEN = {
    "pranet_curves_tests": [
        {"name": "hidden: a random map, 33×21", "feeds": ("the Dice curve of a noisy map",
                                                         "the IoU curve of a noisy map"), "map": "random",
         "shape": (33, 21)},
        {"name": "hidden: a flat map", "feeds": (_EDGES,), "map": "flat", "shape": (16, 16)},
        {"name": "hidden: a perfect map", "feeds": (_EDGES,), "map": "perfect", "shape": (40, 52)},
        {"name": "hidden: a random map, an empty mask", "feeds": (_EDGES,), "map": "random", "shape": (24, 30),
         "mask": "empty"},
    ],
    "mae_tests": [
        {"name": "hidden: a random map, 20×30", "feeds": ("a noisy map",), "map": "random", "shape": (20, 30)},
        {"name": "hidden: a flat map", "feeds": ("a flat map",), "map": "flat", "shape": (8, 8), "level": 9},
        {"name": "hidden: a flat map, an empty mask", "feeds": ("a flat map",), "map": "flat", "shape": (12, 10),
         "mask": "empty"},
    ],
}
