"""Run configuration: dataclasses, named profiles, YAML files and ``key=value`` overrides.

A configuration is built in layers, each one overriding the one before::

    dataclass defaults (the paper's polyp recipe)  →  profile  →  YAML file  →  command-line options  →  key=value

>>> cfg = load_config(profile="tiny", overrides=["optim.epochs=3", "data.train_sizes=[128,160]"])
>>> cfg.optim.epochs, cfg.optim.encoder_lr
(3, ...)

Keys are dotted: ``section.field`` with sections ``model``, ``data``, ``optim``, ``loss``, ``run``. Values are read
as YAML (``null``, ``true``, ``[224, 256]``, ``5e-3``) and then coerced to the field's type; a key that does not
exist raises :class:`ConfigError` naming the closest existing key.

Profiles (``PROFILES``) are themselves lists of dotted overrides on top of the defaults, so ``m2s train --profile
tiny --print-config`` or ``profile_overrides("tiny")`` shows exactly what a profile changes.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import math
import os
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .atomic import write_text
from .constants import TASKS, TEST_SIZE, TRAIN_SIZES
from .profiles import PROFILES, SETTING_RANGES, DuplicateKeyError, UniqueKeyLoader

__all__ = [
    "ConfigError",
    "ModelConfig",
    "DataConfig",
    "OptimConfig",
    "LossConfig",
    "RunConfig",
    "Config",
    "PROFILES",
    "TASKS",
    "profile_overrides",
    "get_profile",
    "resolve_profile",
    "load_config",
    "parse_overrides",
    "image_size_problem",
    "read_yaml",
]



class ConfigError(ValueError):
    """A configuration key or value is invalid (the message says which, and what would be valid)."""


def image_size_problem(size: int) -> str | None:
    """The one rule for an image side (training, validation and test): a multiple of 8, at least 32."""
    if size < 32 or size % 8:
        return f"image size {size} must be a multiple of 8 and at least 32 (the paper uses multiples of 32)"
    return None


# ---------------------------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class ModelConfig:
    """The network (``m2s_lib.model.build_model`` arguments).

    ``unit`` / ``wiring`` left at ``None`` take the chosen model's own default (``msu`` for M2SNet, ``su`` for
    MSNet; ``official`` wiring). ``encoder_weights``: ``imagenet``, a file, or ``null`` (random initialisation).
    """

    name: str = "m2snet"
    encoder_name: str = "res2net50d"
    encoder_weights: str | None = "imagenet"
    in_channels: int = 3
    classes: int = 1
    unit: str | None = None
    wiring: str | None = None
    msu_impl: str = "fast"
    kernel_sizes: list[int] = field(default_factory=lambda: [1, 3, 5])
    filter_weights: str = "ones"
    share_filters: bool = True
    max_order: int = 5
    channels: int = 64

    def build_kwargs(self, weights: bool = True) -> dict[str, Any]:
        """Keyword arguments for ``build_model(self.name, **kwargs)`` (``weights=False``: random encoder)."""
        kw = dict(
            encoder_name=self.encoder_name, encoder_weights=self.encoder_weights if weights else None,
            in_channels=self.in_channels, classes=self.classes, msu_impl=self.msu_impl,
            kernel_sizes=tuple(self.kernel_sizes), filter_weights=self.filter_weights,
            share_filters=self.share_filters, max_order=self.max_order, channels=self.channels,
        )  # fmt: skip
        if self.unit is not None:
            kw["unit"] = self.unit
        if self.wiring is not None:
            kw["wiring"] = self.wiring
        return kw


@dataclass
class DataConfig:
    """Where the images come from and how they are sized and augmented.

    ``root``: the train folder's parent (``root/TrainDataset``) or a folder with ``images/`` + ``masks/``; ``null``
    trains on synthetic data of ``task`` generated once under ``synthetic_dir``. Validation: ``val_root`` if given,
    else a held-out ``val_fraction`` of the training folder (0 = no validation, then ``best.pt`` follows the
    training loss). ``train_sizes``: one size drawn per batch (the paper's multi-scale training; ``[]`` = always
    ``size``). ``num_workers``: ``-1`` picks a value for the device.
    """

    task: str = "polyp"
    root: str | None = None
    val_root: str | None = None
    val_fraction: float = 0.0
    size: int = TEST_SIZE
    train_sizes: list[int] = field(default_factory=lambda: list(TRAIN_SIZES))
    test_size: int | None = None
    rotation: float = 10.0
    hflip: bool = True
    class_values: list[int] | None = None
    fold: int | None = None
    n_folds: int = 4
    num_workers: int = -1
    synthetic_dir: str = "runs/data"
    synthetic_n: int = 400
    synthetic_n_test: int = 100
    synthetic_size: int = TEST_SIZE
    synthetic_seed: int = 0
    synthetic_difficulty: str = "realistic"  # polyp only: "realistic" or "teaching" (m2s_lib.data.synthetic.polyp_style)

    @property
    def eval_size(self) -> int:
        return int(self.test_size or self.size)

    def synthetic_root(self, base: str | os.PathLike | None = None, task: str | None = None) -> Path:
        """The folder of these synthetic settings, ``<base or synthetic_dir>/<dataset_name>``: the one rule that
        ``m2s train``, ``make reproduce``, the notebooks and the course share (``task`` replaces ``self.task``)."""
        from .data.synthetic import dataset_name

        name = dataset_name(task or self.task, self.synthetic_n, self.synthetic_n_test, self.synthetic_seed,
                            self.synthetic_size, self.synthetic_difficulty)
        return Path(base if base is not None else self.synthetic_dir).expanduser() / name


@dataclass
class OptimConfig:
    """SGD with two parameter groups and the warm-up + linear-decay ("triangular") schedule.

    ``lr`` is the maximum learning rate of the head (everything but the encoder); the encoder's is
    ``encoder_lr_ratio × lr`` (paper: 0.005 and 0.05). ``schedule``: ``triangular`` (``lr·(1 − |2(e+1)/(E+1) − 1|)``,
    the authors' formula) or ``constant``; ``schedule_unit``: ``epoch`` (the authors') or ``step`` (the same
    triangle, updated every optimiser step). ``warmup_fraction``: where the triangle peaks (0.5, the authors'; a
    smaller value gives a short warm-up and a long decay, ``m2s_lib.engine.optim.lr_factor``). ``batch_size`` is the global batch (divided among DDP processes).
    ``nesterov``: the authors' script uses Nesterov momentum. ``grad_clip``: max gradient norm, 0 = off.
    ``optimizer``: ``sgd`` (the paper) or ``adamw`` (not the paper's: converges faster from random initialisation,
    used by the CPU ``tiny`` profile; ``momentum`` and ``nesterov`` are then unused).
    """

    optimizer: str = "sgd"
    lr: float = 0.05
    encoder_lr_ratio: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    batch_size: int = 16
    epochs: int = 50
    schedule: str = "triangular"
    schedule_unit: str = "epoch"
    warmup_fraction: float = 0.5
    grad_clip: float = 0.0

    @property
    def encoder_lr(self) -> float:
        return self.lr * self.encoder_lr_ratio


@dataclass
class LossConfig:
    """``structure_weight · structure_loss + lossnet_weight · LossNet`` (Eq. 4; the authors' script uses 0.1 for
    LossNet, the paper prints 1; ``structure_weight=0`` is Table 10's "L_f alone" row)."""

    structure_weight: float = 1.0
    lossnet_weight: float = 0.1
    lossnet_weights: str | None = "imagenet"
    lossnet_input_size: int | None = 224
    reproduce_authors_bce_slip: bool = False


@dataclass
class RunConfig:
    """Where and how the run executes.

    ``device``: ``auto`` (CUDA if present, else CPU), ``cpu``, ``cuda``, ``cuda:1``. ``amp``/``channels_last``
    apply on CUDA only. ``deterministic``: seeds plus ``torch.use_deterministic_algorithms(True)`` on CPU (bitwise
    repeatable runs and resumes). ``progress_interval``: seconds between progress-bar refreshes (keeps papermill
    logs short). ``max_steps_per_epoch``: 0 = the whole epoch (a small number gives a smoke test).
    """

    out: str | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    amp_dtype: str = "float16"
    channels_last: bool = True
    deterministic: bool = True
    sync_bn: bool = False
    val_every: int = 1
    eval_protocol: str = "pranet"
    progress: bool = True
    progress_interval: float = 5.0
    max_steps_per_epoch: int = 0


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "loss": LossConfig,
    "run": RunConfig,
}

@functools.lru_cache(maxsize=1)
def _choices() -> dict[str, tuple]:
    """The allowed values of the settings that have a fixed set, taken from the modules that define them. Imported
    on first use: the paper's modules import torch and timm, which ``m2s --help`` and ``import m2s_lib.config``
    need not wait for."""
    from .data.synthetic.polyp import DIFFICULTIES
    from .mmsm import UNITS, WIRINGS
    from .model import MODEL_NAMES
    from .subtraction import FILTER_IMPLS, FILTER_WEIGHTS

    return {
        "model.name": tuple(MODEL_NAMES),
        "model.unit": (None, *UNITS),
        "model.wiring": (None, *WIRINGS),
        "model.msu_impl": FILTER_IMPLS,
        "model.filter_weights": FILTER_WEIGHTS,
        "data.task": TASKS,
        "data.synthetic_difficulty": DIFFICULTIES,
        "optim.optimizer": ("sgd", "adamw"),
        "optim.schedule": ("triangular", "constant"),
        "optim.schedule_unit": ("epoch", "step"),
        "run.amp_dtype": ("float16", "bfloat16"),
        "run.eval_protocol": ("pranet", "authors"),
    }


@dataclass
class Config:
    """A whole run: ``model``, ``data``, ``optim``, ``loss``, ``run`` sections plus the ``profile`` it came from."""

    profile: str = "paper-polyp"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    run: RunConfig = field(default_factory=RunConfig)

    # -- conversion ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: Config | None = None) -> Config:
        """A config from a nested mapping (as in ``config.yaml``), on top of ``base`` (default: the defaults).

        A ``profile`` entry first loads that profile (unless ``base`` is given).
        """
        data = dict(data or {})
        if base is None:
            base = get_profile(data["profile"]) if data.get("profile") else cls()
        cfg = copy.deepcopy(base)
        for key, value in _flatten(data).items():
            cfg.set(key, value)
        cfg.validate()
        return cfg

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        """The config as YAML text; with ``path``, also written there (atomically)."""
        text = "# m2s run configuration (resolved: profile + file + overrides)\n" + yaml.safe_dump(
            self.to_dict(), sort_keys=False, default_flow_style=None
        )
        if path is not None:
            write_text(path, text)
        return text

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, base: Config | None = None) -> Config:
        return cls.from_dict(read_yaml(path), base=base)

    @classmethod
    def from_saved(cls, data: Mapping[str, Any]) -> Config:
        """A config saved with :meth:`to_dict` (a checkpoint's, a run's ``config.yaml``), completed by the
        defaults of the profile it names (``custom`` when it names none)."""
        return cls.from_dict(data, base=cls(profile=data.get("profile", "custom")))

    # -- access ----------------------------------------------------------------------------------------------
    def get(self, key: str) -> Any:
        section, name = _split_key(key)
        return getattr(getattr(self, section), name)

    def set(self, key: str, value: Any) -> None:
        """Set a dotted key, coercing ``value`` to the field's type (strings are read as YAML first)."""
        if key == "profile":
            self.profile = str(value)
            return
        section, name = _split_key(key)
        hint = _field_types(SECTIONS[section])[name]
        if isinstance(value, str):
            value = _yaml_scalar(value)
        coerced = _coerce(value, hint, key)
        choices = _choices().get(key)
        if choices is not None and coerced not in choices:
            if isinstance(coerced, str) and coerced.lower() in choices:
                coerced = coerced.lower()
            else:
                raise ConfigError(f"{key}={coerced!r} is not one of {[c for c in choices]}")
        setattr(getattr(self, section), name, coerced)

    def override(self, overrides: Iterable[str] | Mapping[str, Any]) -> Config:
        """A copy with ``key=value`` strings (or a ``{key: value}`` mapping) applied."""
        cfg = copy.deepcopy(self)
        items = overrides.items() if isinstance(overrides, Mapping) else parse_overrides(overrides).items()
        for key, value in items:
            cfg.set(key, value)
        cfg.validate()
        return cfg

    def validate(self) -> Config:
        """Cross-field checks that single-field coercion cannot do."""
        m, d, o = self.model, self.data, self.optim
        if m.classes < 1:
            raise ConfigError(f"model.classes={m.classes} must be ≥ 1")
        if d.task == "oct" and m.classes < 2:
            raise ConfigError("data.task=oct is multi-class: set model.classes (4 for GOALS: background + 3 layers)")
        if d.class_values is not None and len(d.class_values) != m.classes:
            raise ConfigError(
                f"data.class_values has {len(d.class_values)} values but model.classes={m.classes}: give one mask "
                "value per class, background first"
            )
        if not 0 <= d.val_fraction < 1:
            raise ConfigError(f"data.val_fraction={d.val_fraction} must be in [0, 1)")
        for key, s in [("data.size", d.size), *(("data.train_sizes", t) for t in d.train_sizes),
                       ("data.test_size", d.eval_size)]:
            if problem := image_size_problem(s):
                raise ConfigError(f"{key}: {problem}")
        for key, ok, rule in SETTING_RANGES:
            value = self.get(key)
            if value is not None and not ok(value):
                raise ConfigError(f"{key}={value!r} must be {rule}")
        if not 0 < o.warmup_fraction < 1:
            raise ConfigError(f"optim.warmup_fraction={o.warmup_fraction} must be in (0, 1) (0.5: the authors' triangle)")
        if self.loss.lossnet_weight < 0 or self.loss.structure_weight < 0:
            raise ConfigError("loss.lossnet_weight and loss.structure_weight must be ≥ 0 (0 switches a term off)")
        if self.loss.lossnet_weight == 0 and self.loss.structure_weight == 0:
            raise ConfigError("loss.structure_weight and loss.lossnet_weight are both 0: no loss is left to train on")
        if d.fold is not None and not 0 <= d.fold < d.n_folds:
            raise ConfigError(f"data.fold={d.fold} must be in 0..{d.n_folds - 1}")
        return self

    def diff(self, other: Config, ignore: Iterable[str] = ()) -> dict[str, tuple[Any, Any]]:
        """``{key: (self's value, other's value)}`` for every dotted key that differs."""
        a, b = _flatten(self.to_dict()), _flatten(other.to_dict())
        skip = tuple(ignore)
        return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and not k.startswith(skip)}

    def __str__(self) -> str:
        return self.to_yaml()


# ---------------------------------------------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------------------------------------------
# The named profiles (lists of overrides on top of the dataclass defaults) are m2s_lib.profiles.PROFILES.


def profile_overrides(name: str) -> dict[str, Any]:
    """The dotted overrides that make profile ``name`` (a copy)."""
    if name not in PROFILES:
        close = difflib.get_close_matches(name, PROFILES, n=1, cutoff=0.3)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"profile {name!r} does not exist.{hint} Profiles: {', '.join(PROFILES)}")
    return copy.deepcopy(PROFILES[name])


def resolve_profile(name: str, device: Any = "cpu", task: str = "polyp") -> tuple[str, str]:
    """``(profile name, why)``: ``"auto"`` is the paper's ``paper-<task>`` on CUDA and ``tiny`` elsewhere (CPU,
    Apple MPS), so that a notebook's *Run All* finishes on a laptop; any other name is returned as asked."""
    if name != "auto":
        profile_overrides(name)  # an unknown name fails here, with the closest match
        return name, "asked for explicitly"
    kind = getattr(device, "type", str(device).split(":")[0])
    if kind == "cuda":
        return f"paper-{task}", f"profile='auto' on a CUDA device ({device}): the paper's full-size run"
    return "tiny", (f"profile='auto' on {kind.upper()} ({device}): the paper's run would take days here, so the "
                    f"CPU-sized 'tiny' profile (minutes); set profile='paper-{task}' to insist")


def get_profile(name: str) -> Config:
    """The :class:`Config` of a named profile."""
    cfg = Config(profile=name)
    for key, value in profile_overrides(name).items():
        cfg.set(key, value)
    return cfg.validate()


def load_config(
    path: str | os.PathLike | None = None,
    profile: str | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    default_profile: str = "paper-polyp",
) -> Config:
    """Profile (``profile``, else the file's ``profile:`` entry, else ``default_profile``; ``m2s train`` passes
    ``tiny``) → YAML file → ``key=value`` overrides.

    An explicit ``profile`` wins over the file's ``profile:`` entry.
    """
    file_data = read_yaml(path) if path is not None else {}
    name = profile or file_data.get("profile") or default_profile
    base = get_profile(name)
    file_data.pop("profile", None)
    cfg = Config.from_dict(file_data, base=base)
    return cfg.override(overrides)


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a YAML settings file (``--config FILE``, a run's ``config.yaml``): one :class:`ConfigError`
    line naming the file for invalid YAML, a key given twice, or anything but a mapping of sections."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except DuplicateKeyError as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file (UTF-8): pass a YAML settings file") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path} must hold a mapping of sections (model:, data:, optim:, ...)")
    return dict(data)


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["optim.lr=0.01", "data.train_sizes=[128,160]"]`` → ``{"optim.lr": "0.01", ...}`` (keys checked)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. optim.lr=0.01)")
        key, value = item.split("=", 1)
        key = key.strip()
        if key != "profile":
            _split_key(key)
        out[key] = value.strip()
    return out


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------
def all_keys() -> list[str]:
    """Every dotted key, in section order."""
    return [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


def _unknown(key: str) -> ConfigError:
    keys = all_keys()
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    if not close:  # a bare or misplaced field name: look for it in every section
        tail = key.rsplit(".", 1)[-1]
        close = [k for k in keys if k.endswith("." + tail)] or difflib.get_close_matches(
            tail, keys, n=1, cutoff=0.5
        ) or [k for k in keys if difflib.get_close_matches(tail, [k.split(".")[1]], n=1, cutoff=0.7)]
    hint = f" Did you mean {close[0]!r}?" if close else f" Keys look like {keys[0]!r}."
    return ConfigError(f"unknown config key {key!r}.{hint}")


def _split_key(key: str) -> tuple[str, str]:
    if "." not in key:
        raise _unknown(key)
    section, name = key.split(".", 1)
    if section not in SECTIONS or name not in {f.name for f in dataclasses.fields(SECTIONS[section])}:
        raise _unknown(key)
    return section, name


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if not prefix and key == "profile":
            continue
        if not prefix and isinstance(value, Mapping):
            if key not in SECTIONS:
                close = difflib.get_close_matches(str(key), SECTIONS, n=1, cutoff=0.5)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"unknown config section {key!r}.{hint} Sections: {', '.join(SECTIONS)}")
            out.update(_flatten(value, prefix=f"{key}."))
        else:
            out[full] = value
    return out


_TYPE_CACHE: dict[type, dict[str, Any]] = {}


def _field_types(cls: type) -> dict[str, Any]:
    if cls not in _TYPE_CACHE:
        _TYPE_CACHE[cls] = typing.get_type_hints(cls)
    return _TYPE_CACHE[cls]


def _yaml_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        return text


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "~", "")):
            if type(None) in args:
                return None
        return _coerce(value, inner[0], key)
    if origin in (list, tuple):
        (elem,) = args[:1] or (Any,)
        if isinstance(value, str):
            value = [v for v in value.strip("[]() ").split(",") if v.strip()]
        elif not isinstance(value, (list, tuple)):
            value = [value]
        return [_coerce(_yaml_scalar(v) if isinstance(v, str) else v, elem, key) for v in value]
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        if hint is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                return int(value)
            return int(str(value).strip()) if isinstance(value, str) else int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):
                raise ConfigError(f"{key}={value!r} is not a finite number")
            return number
        if hint is str:
            if value is None:
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        name = getattr(hint, "__name__", str(hint))
        raise ConfigError(f"{key}={value!r} is not a valid {name}") from None
    return value
