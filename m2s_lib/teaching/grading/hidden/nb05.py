"""Hidden cases of notebook 05: odd sizes, batches of three, float64, empty and full masks, a single image,
probability maps, a perfect prediction."""

HIDDEN = {
    "boundary_weight_tests": [
        {"name": "hidden: batch 3, 40×57, float64", "feeds": ("a batch of odd-sized float64 masks",),
         "masks": "random", "shape": (3, 40, 57), "cut": 0.7, "dtype": "float64"},
        {"name": "hidden: an empty mask (weight 1 everywhere)", "feeds": ("empty and full masks",), "masks": "empty",
         "shape": (1, 20, 20)},
        {"name": "hidden: a full mask, 33×16", "feeds": ("empty and full masks",), "masks": "full",
         "shape": (2, 33, 16)},
    ],
    "structure_loss_tests": [
        {"name": "hidden: batch 3, 48×64, float64", "feeds": ("a batch of three float64 images",), "masks": "random",
         "shape": (3, 48, 64), "dtype": "float64", "scale": 4.0},
        {"name": "hidden: empty masks", "feeds": ("empty masks",), "masks": "empty", "shape": (2, 32, 32),
         "scale": 1.0},
        {"name": "hidden: one image, 40×40", "feeds": ("a single image",), "masks": "random", "shape": (1, 40, 40),
         "scale": 2.0},
    ],
    "vgg_levels_tests": [
        {"name": "hidden: batch 2, 50×70 probabilities, resized to 40×40",
         "feeds": ("a batch of probability maps of another size",), "masks": "probabilities", "shape": (2, 50, 70),
         "input_size": 40},
    ],
    "lossnet_term_tests": [
        {"name": "hidden: batch 3, 16×16 at the first level", "feeds": ("four levels of features",), "n": 3,
         "side": 16, "same": False, "dtype": "float32"},
        {"name": "hidden: float64, one image", "feeds": ("four levels of features",), "n": 1, "side": 24,
         "same": False, "dtype": "float64"},
        {"name": "hidden: a perfect prediction (0)", "feeds": ("a perfect prediction gives 0",), "n": 2, "side": 16,
         "same": True, "dtype": "float32"},
    ],
}
