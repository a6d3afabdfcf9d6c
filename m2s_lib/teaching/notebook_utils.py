"""Small helpers shared by the notebooks: device choice, seeding, environment report, run outputs, toy inputs.

Nothing here is needed by the library itself; the notebooks import it as ``import m2s_lib.teaching.notebook_utils as nbu``.

Run outputs: every notebook has a ``run_dir`` parameter. ``None`` (the interactive default) shows figures and
tables only; a folder (absolute, or relative to the repository root — never to the notebook's working directory)
makes :class:`NotebookOutputs` also write them to ``<run_dir>/<notebook>/``: ``<name>.png`` for figures,
``<name>.csv`` + ``<name>.md`` for tables, and ``outputs.json`` listing them in order with their captions, so that
a report can collect them.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import write_bytes, write_text
from ..backbones import imagenet_weights_available, is_online  # noqa: F401  re-exported for the notebooks
from ..constants import in_repo, repo_root, shown_path  # noqa: F401  re-exported for the notebooks
from ..engine.runtime import seed_everything, select_device
from .viz import show_figure  # re-exported: notebooks call nbu.show_figure

__all__ = [
    "NotebookOutputs",
    "ReadyModel",
    "environment_report",
    "is_online",
    "load_or_train",
    "NotebookData",
    "pick_device",
    "prepare_data",
    "print_environment",
    "randomise_batchnorms",
    "repo_root",
    "resolve_path",
    "resolve_pretrained",
    "seed_everything",
    "show_figure",
    "shown_path",
    "start",
    "synthetic_defaults",
    "thin_structure_mask",
    "thin_structure_parts",
    "toy_polyp",
]


# ---------------------------------------------------------------------------------------------------------------
# Paths, device, seeds, environment
# ---------------------------------------------------------------------------------------------------------------
def resolve_path(path: str | os.PathLike | None) -> Path | None:
    """``None`` stays ``None``; a relative path is taken relative to the repository root, not to the cwd."""
    if path is None or str(path) == "":
        return None
    return in_repo(path)


# The notebooks' names for the engine's one device rule and one seeding rule.
def pick_device(name: str | torch.device | None = "auto") -> torch.device:
    """``select_device`` (the engine's one device rule) whose error names the notebook's setting."""
    return select_device(name, fix="device='auto' or 'cpu' in the parameters cell")


def _version(module: str) -> str:
    try:
        mod = __import__(module)
        return str(getattr(mod, "__version__", "?"))
    except Exception:  # noqa: BLE001 — not installed, or broken: the report says so instead of failing
        return "not installed"


def _git_commit() -> str:
    head = repo_root() / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref_file = repo_root() / ".git" / ref[5:]
            if ref_file.is_file():
                return ref_file.read_text().strip()[:12]
            packed = repo_root() / ".git" / "packed-refs"
            for line in packed.read_text().splitlines() if packed.is_file() else []:
                if line.endswith(ref[5:]):
                    return line.split()[0][:12]
            return "unknown"
        return ref[:12]
    except OSError:
        return "unknown"


def environment_report(device: torch.device | str | None = None) -> dict[str, Any]:
    """Versions, interpreter, threads, device and git commit, as a flat dict (for a table or a report header)."""
    device = pick_device("auto") if device is None else torch.device(device)
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "interpreter": shown_path(sys.executable),
        "platform": platform.platform(terse=True),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "timm": _version("timm"),
        "numpy": np.__version__,
        "m2s_lib": _version("m2s_lib"),
        "git commit": _git_commit(),
        "device": str(device),
        "torch threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
    }
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
    return report


def print_environment(device: torch.device | str | None = None) -> None:
    """Print :func:`environment_report` as aligned ``key: value`` lines."""
    report = environment_report(device)
    width = max(len(k) for k in report)
    for key, value in report.items():
        print(f"{key:<{width}} : {value}")


def start(notebook: str, *, device: str | torch.device | None = "auto", seed: int | None = 0,
          run_dir: str | os.PathLike | None = None, environment: bool = True) -> tuple[torch.device, NotebookOutputs]:
    """The notebooks' first line after their imports: seed (unless ``seed`` is ``None``), choose the device, open
    the run outputs of ``notebook`` and print the environment report (unless ``environment=False``).

    >>> dev, out = nbu.start("01_subtraction_unit", device=device, seed=seed, run_dir=run_dir)
    """
    if seed is not None:
        seed_everything(seed)
    dev = pick_device(device)
    out = NotebookOutputs(run_dir, notebook)
    if environment:
        print_environment(dev)
    return dev, out


# ---------------------------------------------------------------------------------------------------------------
# Figures and tables: shown inline, and saved when the notebook has a run folder
# ---------------------------------------------------------------------------------------------------------------
class NotebookOutputs:
    """Shows a notebook's figures and tables, and writes them to ``<run_dir>/<notebook>/`` when ``run_dir`` is set.

    >>> out = NotebookOutputs(run_dir, "01_subtraction_unit")   # run_dir None: show only
    >>> out.figure(fig, "redundancy", "Shared vs difference energy per level pair")
    >>> out.table(df, "redundancy")                              # returns df, so it displays as a cell's last line
    """

    def __init__(self, run_dir: str | os.PathLike | None, notebook: str):
        self.notebook = notebook
        root = resolve_path(run_dir)
        self.folder = None if root is None else root / notebook
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        self._index: list[dict[str, str]] = []

    def __repr__(self) -> str:
        where = shown_path(self.folder) if self.folder is not None else "not saved (run_dir=None)"
        return f"NotebookOutputs({self.notebook!r}: {where})"

    def _record(self, kind: str, name: str, files: list[Path], caption: str | None) -> None:
        self._index = [item for item in self._index if item["name"] != name]
        self._index.append(
            {"kind": kind, "name": name, "files": [p.name for p in files], "caption": caption or ""}
        )
        write_text(self.folder / "outputs.json", json.dumps(self._index, indent=2) + "\n")

    def figure(self, fig, name: str, caption: str | None = None, dpi: int = 110) -> None:
        """Show ``fig`` (and save it as ``<name>.png`` when saving), then close it. Rendered once for both."""
        png = show_figure(fig, dpi)
        if self.folder is not None:
            path = self.folder / f"{name}.png"
            write_bytes(path, png)  # atomic: a report never picks up half a PNG
            self._record("figure", name, [path], caption)

    def table(self, df, name: str, caption: str | None = None, floatfmt: str = ".4g"):
        """Save a pandas DataFrame as ``<name>.csv`` and ``<name>.md`` (when saving); return it for display."""
        if self.folder is not None:
            csv, md = self.folder / f"{name}.csv", self.folder / f"{name}.md"
            write_text(csv, df.to_csv())
            try:
                text = df.to_markdown(floatfmt=floatfmt)
            except ImportError:  # tabulate missing: plain text is still readable
                text = df.to_string()
            write_text(md, (f"**{caption}**\n\n" if caption else "") + text + "\n")
            self._record("table", name, [csv, md], caption)
        return df


# ---------------------------------------------------------------------------------------------------------------
# Pretrained weights without hanging offline
# ---------------------------------------------------------------------------------------------------------------
def resolve_pretrained(weights: str | os.PathLike | None, encoder_name: str) -> str | Path | None:
    """The encoder weights to actually use: ``"imagenet"`` only if cached or online, else ``None`` with a message.

    Offline, timm's downloader retries for about a minute before failing; this probe answers in a second or two.
    A file path is resolved against the repository root and must exist.
    """
    if weights is None:
        return None
    if str(weights) == "imagenet":
        if imagenet_weights_available(encoder_name):
            return "imagenet"
        print(
            f"ImageNet weights for {encoder_name!r} are not cached and the hub cannot be reached (offline): "
            "falling back to a randomly initialised encoder. The numbers below then describe random features; "
            "run once online, or pass encoder_weights='/path/to/weights.pth', for trained ones."
        )
        return None
    path = resolve_path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"encoder_weights={str(weights)!r}: no such file ({path})")
    return path


# ---------------------------------------------------------------------------------------------------------------
# Pieces the notebooks share: non-trivial BatchNorms for equality checks, a model from a checkpoint or trained here
# ---------------------------------------------------------------------------------------------------------------
def randomise_batchnorms(module: torch.nn.Module, generator: torch.Generator | None = None) -> torch.nn.Module:
    """Give every ``BatchNorm2d`` of ``module`` non-trivial parameters and statistics (fresh ones are 1/0 and 0/1,
    and timm zero-initialises residual branches, so an equality check on them proves little): weight ~ U(0.5, 1.5),
    bias ~ U(-0.2, 0.2), running mean ~ U(-0.5, 0.5), running variance ~ U(0.5, 2), drawn in that order, module by
    module (from ``generator``, else torch's global generator). Returns ``module``."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.uniform_(-0.2, 0.2, generator=generator)
                m.running_mean.uniform_(-0.5, 0.5, generator=generator)
                m.running_var.uniform_(0.5, 2.0, generator=generator)
    return module


@dataclass
class ReadyModel:
    """What :func:`load_or_train` returns: the model (eval mode, on the device), its config, where it came from
    (a sentence for the notebook), and the history of the fallback training (``None`` for a checkpoint)."""

    model: torch.nn.Module
    config: Any
    origin: str
    history: Any = None


SYNTHETIC_PARAMETERS = ("synthetic_n", "synthetic_n_test", "synthetic_size", "synthetic_difficulty")


def synthetic_defaults(profile_cfg, data_root: str | os.PathLike | None, *, seed: int = 0, task: str | None = None,
                       **given: Any) -> tuple[str, dict[str, Any]]:
    """The notebooks' data rule: every synthetic setting in ``given`` (``SYNTHETIC_PARAMETERS``) left at ``None``
    takes the profile's value, and ``data_root=None`` becomes the profile's synthetic folder for those settings
    (``<data.synthetic_dir>/<dataset_name>``, the folder ``m2s train`` and notebooks 00/06/07/08 share).
    Returns ``(data_root, settings)``."""
    unknown = set(given) - set(SYNTHETIC_PARAMETERS)
    if unknown:
        raise TypeError(f"synthetic_defaults: unknown setting(s) {sorted(unknown)}; known: {SYNTHETIC_PARAMETERS}")
    data = profile_cfg.data
    syn = {k: getattr(data, k) if given.get(k) is None else given[k] for k in SYNTHETIC_PARAMETERS}
    if data_root is None:
        data_root = dataclasses.replace(data, **syn, synthetic_seed=seed).synthetic_root(task=task)
    return str(data_root), syn


@dataclass
class NotebookData:
    """What :func:`prepare_data` returns: the resolved profile and its config, the dataset folder (ready to read),
    whether it is ``"real"`` or ``"synthetic"``, the synthetic settings used, and the test sets found in it."""

    profile: str
    config: Any
    root: Path
    source: str
    synthetic: dict[str, Any]
    test_sets: dict[str, Path]

    @property
    def task(self) -> str:
        return self.config.data.task

    @property
    def label(self) -> str:
        """``"synthetic polyp data"`` with a warning for synthetic data, for captions and table titles."""
        warning = " (SYNTHETIC data: not comparable with the paper)" if self.source == "synthetic" else ""
        return f"{self.source} {self.task} data{warning}"


def prepare_data(profile: str, device: torch.device | str, *, data_root: str | os.PathLike | None = None,
                 seed: int = 0, progress: bool = False, **synthetic: Any) -> NotebookData:
    """The notebooks' one data-setup call: resolve ``profile`` (``"auto"`` allowed) for ``device``, apply the
    data rule of :func:`synthetic_defaults` to ``data_root`` and the ``synthetic_*`` settings (``None``: the
    profile's), then make sure the folder holds data (a real dataset is used as it is, a missing or empty one gets
    the synthetic set of ``seed``). Prints what it chose in two lines.

    >>> data = nbu.prepare_data(profile, dev, data_root=data_root, seed=synthetic_seed, synthetic_n=synthetic_n,
    ...                         synthetic_n_test=synthetic_n_test, synthetic_size=synthetic_size,
    ...                         synthetic_difficulty=synthetic_difficulty)
    """
    import time

    from ..config import get_profile, resolve_profile
    from ..data import SegmentationFolder, find_test_sets
    from ..data import synthetic as synthetic_data

    profile, why = resolve_profile(profile, device)
    print(f"profile {profile!r} ({why})")
    cfg = get_profile(profile)
    task = cfg.data.task
    data_root, syn = synthetic_defaults(cfg, data_root, seed=seed, task=task, **synthetic)
    began = time.perf_counter()
    root, source = synthetic_data.ensure_dataset(
        task, resolve_path(data_root), n=syn["synthetic_n"], seed=seed, size=syn["synthetic_size"],
        n_test=syn["synthetic_n_test"], difficulty=syn["synthetic_difficulty"], progress=progress)
    try:
        test_sets = find_test_sets(root)
    except Exception:  # noqa: BLE001 — a training-only folder: the notebook that needs test sets says so itself
        test_sets = {}
    sizes = {name: len(SegmentationFolder(folder)) for name, folder in test_sets.items()}
    print(f"{source} {task} data in {shown_path(root)} ({time.perf_counter() - began:.1f} s)"
          + (f"; test sets (images): {sizes}" if sizes else "")
          + (" (no synthetic manifest: taken as the real data)" if source == "real" else ""))
    return NotebookData(profile, cfg, Path(root), source, syn, test_sets)


def load_or_train(checkpoint_path: str | os.PathLike | None, *, data_root: str | os.PathLike, profile: str,
                  epochs: int, steps_per_epoch: int, seed: int, device: torch.device | str,
                  image_size: int | None = None, train_dir: str | os.PathLike | None = None) -> ReadyModel:
    """The notebooks' model rule: the checkpoint at ``checkpoint_path`` (relative to the repository root; an m2s
    checkpoint or the authors' weights) when it exists, else a short training run here with the library's
    ``Trainer`` (``profile``, ``"auto"`` allowed; ``epochs`` of at most ``steps_per_epoch`` steps, 0: whole epochs;
    at ``image_size`` with the multi-scale sizes rescaled when given), its checkpoints in ``train_dir`` if given."""
    from ..config import get_profile, resolve_profile
    from ..data.folders import train_sizes_for
    from ..engine.checkpoint import load_model
    from ..engine.trainer import Trainer

    device = torch.device(device) if isinstance(device, str) else device
    ckpt = resolve_path(checkpoint_path)
    if ckpt is not None and ckpt.is_file():
        model, cfg = load_model(ckpt, device=device)
        return ReadyModel(model.to(device).eval(), cfg, f"checkpoint {shown_path(ckpt)}")
    profile, _ = resolve_profile(profile, device)
    where = "checkpoint_path is None" if ckpt is None else f"nothing at {shown_path(ckpt)}"
    print(f"No checkpoint ({where}): training a short model here instead, with the library's Trainer "
          f"({profile!r} profile, {epochs} epoch(s) of at most {steps_per_epoch or 'all'} steps).")
    settings = {"data.root": str(data_root), "optim.epochs": epochs, "run.max_steps_per_epoch": steps_per_epoch,
                "run.seed": seed, "run.device": str(device)}
    if image_size is not None:  # train at the size it is looked at, with the multi-scale sizes rescaled
        settings["data.size"] = image_size
        settings["data.train_sizes"] = list(train_sizes_for(image_size))
    cfg = get_profile(profile).override(settings)
    train_dir = resolve_path(train_dir)
    trainer = Trainer(cfg, train_dir, overwrite=True)
    history = trainer.fit()
    if train_dir is not None:
        print(f"checkpoints in {shown_path(train_dir)}: pass checkpoint_path='{shown_path(train_dir / 'best.pt')}' "
              "to reuse this model")
    origin = f"trained here: {profile!r} profile, {trainer.epoch} epoch(s) of {trainer.steps_per_epoch} steps"
    return ReadyModel(trainer.model.to(device).eval(), cfg, origin, history)


# ---------------------------------------------------------------------------------------------------------------
# Toy inputs for the foundation notebooks (the datasets live in m2s_lib.data and m2s_lib.data.synthetic)
# ---------------------------------------------------------------------------------------------------------------
def _smooth_noise(size: int, generator: torch.Generator, scale: int) -> torch.Tensor:
    coarse = torch.rand(1, 1, max(2, size // scale), max(2, size // scale), generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0, 0]


def toy_polyp(size: int = 352, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A colonoscopy-like toy image (3×H×W in [0, 1]) with one shaded, textured blob and its mask (1×H×W in {0, 1}).

    Deterministic for a given seed. Enough structure (texture, shading, a boundary) for feature maps to be worth
    looking at; not a dataset.
    """
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    cy, cx = (torch.rand(2, generator=g) - 0.5) * 0.6
    ry, rx = 0.25 + 0.2 * torch.rand(2, generator=g)
    angle = torch.rand((), generator=g) * 3.1416
    u = (xx - cx) * torch.cos(angle) + (yy - cy) * torch.sin(angle)
    v = -(xx - cx) * torch.sin(angle) + (yy - cy) * torch.cos(angle)
    radius = (u / rx) ** 2 + (v / ry) ** 2 + 0.15 * (_smooth_noise(size, g, 8) - 0.5)
    mask = (radius < 1).float()
    tissue = 0.55 + 0.25 * _smooth_noise(size, g, 6) + 0.08 * _smooth_noise(size, g, 40)
    vignette = 1 - 0.45 * (xx**2 + yy**2)
    blob_shading = 0.18 * (1 - radius.clamp(0, 1)) + 0.06 * _smooth_noise(size, g, 25)
    base = (tissue * vignette + mask * blob_shading).clamp(0, 1)
    image = torch.stack([base * 0.95 + 0.05, base * 0.55 + 0.05 * mask, base * 0.45]).clamp(0, 1)
    return image, mask[None]


def thin_structure_parts(size: int = 352, seed: int = 0, width: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """The two parts of :func:`thin_structure_mask`, each 1×H×W in {0, 1}: the blob, and the thin strands."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    c = size / 2
    blob = (((yy - c) / (0.18 * size)) ** 2 + ((xx - c) / (0.22 * size)) ** 2 < 1).float()
    strands = torch.zeros(size, size)
    for _ in range(5):
        a, b, phase = torch.rand(3, generator=g)
        freq = 2 + 4 * a
        offset = (0.15 + 0.7 * b) * size
        curve = offset + 0.08 * size * torch.sin(freq * xx / size * 3.1416 + 6.28 * phase)
        strands = torch.maximum(strands, (torch.abs(yy - curve) < width / 2 + 0.5).float())
    return blob[None], strands[None]


def thin_structure_mask(size: int = 352, seed: int = 0, width: float = 1.5) -> torch.Tensor:
    """A 1×H×W binary mask of one blob plus a few thin curved strands (vessel-like) about ``width`` pixels wide.

    Thin structures are almost all boundary: the masks where boundary-weighted losses differ most from plain ones.
    """
    blob, strands = thin_structure_parts(size, seed, width)
    return torch.maximum(blob, strands)
