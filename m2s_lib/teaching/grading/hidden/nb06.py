"""Hidden cases of notebook 06: MSNet and the FPN baseline with other learning rates, other peaks and lengths of
the triangle, plain momentum in float64, Nesterov without weight decay."""

_GROUPS = ("two named groups at their learning rates, with empty buffers",
           "the encoder group holds exactly the encoder's parameters",
           "the head group holds every other parameter, each once")
_FROZEN = "a parameter without a gradient neither moves nor gets a buffer"

HIDDEN = {
    "param_groups_tests": [
        {"name": "hidden: MSNet, width 8, head 0.1, encoder 0.02", "feeds": _GROUPS, "model": "msnet", "width": 8,
         "head_lr": 0.1, "encoder_lr": 0.02},
        {"name": "hidden: FPN baseline, width 8, head 0.03, encoder 0.003", "feeds": _GROUPS, "model": "fpn",
         "width": 8, "head_lr": 0.03, "encoder_lr": 0.003},
    ],
    "triangle_factor_tests": [
        {"name": "hidden: a one-epoch run", "feeds": ("the authors' triangle (peak 0.5)",), "periods": 1,
         "peak": 0.5},
        {"name": "hidden: 7 epochs, peak 0.5", "feeds": ("the authors' triangle (peak 0.5)",), "periods": 7,
         "peak": 0.5},
        {"name": "hidden: 8 epochs, peak 0.2 (tiny)", "feeds": ("the top moved to another peak",), "periods": 8,
         "peak": 0.2},
        {"name": "hidden: 13 epochs, peak 0.7", "feeds": ("the top moved to another peak",), "periods": 13,
         "peak": 0.7},
    ],
    "sgd_update_tests": [
        {"name": "hidden: momentum 0.9, no weight decay, Nesterov, float32",
         "feeds": ("Nesterov momentum (the paper's recipe)", _FROZEN), "momentum": 0.9, "weight_decay": 0.0,
         "nesterov": True, "dtype": "float32"},
        {"name": "hidden: momentum 0.8, weight decay 1e-2, plain, float64", "feeds": ("plain momentum", _FROZEN),
         "momentum": 0.8, "weight_decay": 1e-2, "nesterov": False, "dtype": "float64"},
    ],
}
