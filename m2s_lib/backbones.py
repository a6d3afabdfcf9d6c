"""Encoders through timm, pretrained-weight resolution, and import of the authors' released checkpoints.

The paper's encoder, Res2Net-50 v1b 26w×4s, is timm's ``res2net50d``: same 524 state-dict keys, same order, same
shapes, bit-identical outputs. So the authors' ``res2net50_v1b_26w_4s`` ``.pth`` loads into it strictly, and the
encoder keys ``resnet.<k>`` of their M2SNet/MSNet checkpoints map to ``encoder.<k>`` here.
"""
from __future__ import annotations

import os
import re
import socket
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import timm
import torch
import torch.nn as nn

__all__ = [
    "create_encoder",
    "is_online",
    "imagenet_weights_available",
    "load_state_dict_file",
    "read_torch_file",
    "load_encoder_weights",
    "official_key_map",
    "convert_official_state_dict",
    "state_dict_mismatch",
    "load_official_checkpoint",
    "EncoderWeightsError",
    "CheckpointMismatchError",
]


class EncoderWeightsError(RuntimeError):
    """Pretrained encoder weights could not be obtained or loaded."""


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the model it is loaded into."""


def _check_encoder_name(name: str) -> None:
    if name in timm.list_models():
        return
    close = timm.list_models(f"*{name.split('.')[0][:6]}*")[:8]
    hint = f" Similar names: {', '.join(close)}." if close else ""
    raise ValueError(f"encoder_name={name!r} is not a timm model.{hint} The paper's encoder is 'res2net50d'.")


def is_online(host: str = "huggingface.co", port: int = 443, timeout: float = 2.0) -> bool:
    """Whether ``host`` answers within ``timeout`` seconds (a quick probe before any download is tried)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _timm_weights_cached(encoder_name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
        from timm.models import get_pretrained_cfg

        hub_id = getattr(get_pretrained_cfg(encoder_name), "hf_hub_id", None)
        if not hub_id:
            return False
        return any(
            isinstance(try_to_load_from_cache(hub_id, name), str)
            for name in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
        )
    except Exception:  # noqa: BLE001 — any failure means "not known to be cached"
        return False


def imagenet_weights_available(encoder_name: str) -> bool:
    """Whether timm's ImageNet weights of ``encoder_name`` are cached or the hub answers (a 2-second probe: offline,
    timm's own downloader retries for about a minute before it fails)."""
    if _timm_weights_cached(encoder_name):
        return True
    return os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("1", "true", "yes", "on") and is_online()


def create_encoder(name: str = "res2net50d", weights: str | os.PathLike | None = None, in_channels: int = 3) -> nn.Module:
    """A timm ``features_only`` encoder returning 5 levels (strides 2, 4, 8, 16, 32).

    ``weights``: ``None`` (random init), ``"imagenet"`` (timm's pretrained tag; needs internet the first time) or
    a path to a ``.pth`` / ``.pt`` / ``.safetensors`` state dict of the full classification model (the authors'
    Res2Net file works as is).
    """
    _check_encoder_name(name)
    pretrained = weights == "imagenet"
    offline_hint = ("Without internet, download the weights elsewhere and pass encoder_weights='/path/to/weights.pth' "
                    "(or .safetensors), or train from scratch with encoder_weights=None.")
    if pretrained and not imagenet_weights_available(name):
        raise EncoderWeightsError(f"ImageNet weights for encoder {name!r} are not cached and the model hub cannot be "
                                  f"reached (offline). {offline_hint}")
    try:
        encoder = timm.create_model(
            name, pretrained=pretrained, features_only=True, out_indices=(0, 1, 2, 3, 4), in_chans=in_channels
        )
    except Exception as err:  # network errors come as many types (OSError, HTTP, hub errors)
        if not pretrained:
            raise
        raise EncoderWeightsError(
            f"could not get ImageNet weights for encoder {name!r} ({type(err).__name__}: {err}). {offline_hint}"
        ) from err
    reductions = encoder.feature_info.reduction()
    if list(reductions) != [2, 4, 8, 16, 32]:
        raise ValueError(
            f"encoder {name!r} gives feature strides {reductions}; M2SNet needs five levels at strides "
            "2, 4, 8, 16, 32 (ResNet/Res2Net/EfficientNet/MobileNet-style timm models)"
        )
    if weights is not None and not pretrained:
        load_encoder_weights(encoder, weights)
    return encoder


def _unreadable(path: Path, err: Exception) -> str:
    """Why ``torch.load`` failed, in words (torch's own text ends in magic numbers and pickle opcodes)."""
    if path.stat().st_size == 0:
        return "is empty (0 bytes)"
    if "weights_only" in str(err) or "Weights only load failed" in str(err):
        return "holds Python objects besides tensors, which are not loaded, for safety (weights_only)"
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(b"PK"):
        return "is damaged or truncated (its zip container cannot be read)"
    return "is not a PyTorch file"


def _declared_size_problem(path: Path) -> str | None:
    """A zip container (the torch file format) whose members declare more content than 4x the file's size plus
    1 MiB: a zip bomb (torch stores records uncompressed, so a real checkpoint declares about its own size). Read
    from the zip's directory, before any record is inflated."""
    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as zf:
            declared = sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return None  # torch.load names the damage
    on_disk = path.stat().st_size
    if declared <= 4 * on_disk + (1 << 20):
        return None
    return (f"declares {declared / 2**30:.2f} GiB of content in a {on_disk / 2**20:.1f} MiB file (a zip bomb or a "
            "damaged file; torch stores checkpoints uncompressed), so it is not read")


def read_torch_file(path: str | os.PathLike, map_location: str | torch.device = "cpu", what: str = "weights") -> object:
    """The one reader of torch files (weights, the authors' checkpoints, training checkpoints): ``torch.load`` with
    ``weights_only=True`` (tensors and plain types, never arbitrary pickled objects). ``what`` names the file in
    the errors: ``FileNotFoundError`` when it is absent, ``CheckpointMismatchError`` when it cannot be read (saying
    why in words, and which files fit)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {str(path)!r} does not exist")
    problem = _declared_size_problem(path)
    if problem:
        raise CheckpointMismatchError(f"{what} file {str(path)!r} {problem}: give a last.pt / best.pt written by "
                                      "`m2s train` or the authors' released .pth")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointMismatchError(
            f"{what} file {str(path)!r} {_unreadable(path, err)}: give a last.pt / best.pt written by `m2s train` or "
            "the authors' released .pth") from err


def load_state_dict_file(path: str | os.PathLike) -> OrderedDict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (unwrapping ``state_dict`` / ``model`` entries)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return OrderedDict(load_file(str(path)))
    obj = read_torch_file(path, what="torch state dict")
    for wrapper in ("state_dict", "model", "model_state"):
        if isinstance(obj, Mapping) and wrapper in obj and isinstance(obj[wrapper], Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping):
        raise CheckpointMismatchError(f"{str(path)!r} holds a {type(obj).__name__}, not a state dict")
    return OrderedDict(obj)


def _strip_prefix(state: Mapping[str, torch.Tensor], prefixes=("module.", "resnet.", "encoder.")) -> dict:
    out = {}
    for key, value in state.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def load_encoder_weights(encoder: nn.Module, weights: str | os.PathLike | Mapping[str, torch.Tensor]) -> None:
    """Load classification-model weights into a ``features_only`` encoder; only the classifier may be unused."""
    state = load_state_dict_file(weights) if not isinstance(weights, Mapping) else weights
    state = _strip_prefix(state)
    own = encoder.state_dict()
    unused = [k for k in state if k not in own]
    head = [k for k in unused if re.match(r"^(fc|classifier|head|last_linear)\.", k)]
    unused = [k for k in unused if k not in head]
    missing = [k for k in own if k not in state]
    wrong_shape = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if unused or missing or wrong_shape:
        raise CheckpointMismatchError(
            f"encoder weights {str(weights) if not isinstance(weights, Mapping) else '(state dict)'} do not fit "
            f"the encoder: missing {missing[:10]}, unexpected {unused[:10]}, wrong shape {wrong_shape[:10]}"
        )
    encoder.load_state_dict({k: state[k] for k in own}, strict=True)


# ---------------------------------------------------------------------------------------------------------------
# The authors' checkpoints
# ---------------------------------------------------------------------------------------------------------------
_LEVEL_NAMES = {1: "x1", 2: "x2", 3: "x3", 4: "x4", 5: "x5"}


def official_key_map(model: nn.Module) -> dict[str, str]:
    """Module-prefix map ``authors' name -> this library's name`` for an official-wiring M2SNet/MSNet."""
    mmsm = model.mmsm
    if mmsm.wiring != "official" or mmsm.max_order != 5:
        raise CheckpointMismatchError("the authors' checkpoints fit only wiring='official' with max_order=5")
    mapping = {"resnet": "encoder"}
    for level in (2, 3, 4, 5):
        mapping[f"x{level}_dem_1"] = f"reduce.E{level}"
    for n in range(2, 6):
        for i in range(1, 7 - n):
            authors = "_".join(_LEVEL_NAMES[j] for j in range(i + n - 1, i - 1, -1))
            mapping[authors] = f"mmsm.units.MS{n}_{i}.conv"
    mapping["x5_dem_4"] = "mmsm.top_input"
    for i in (1, 2, 3):
        mapping[f"level{i}"] = f"mmsm.fuse.CE{i}"
    if mmsm.filters is not None:
        for k in mmsm.filters:
            mapping[f"conv_{k}"] = f"mmsm.filters.{k}"
    mapping["x5_dem_5"] = "decoder.reduce_top"
    for i in (4, 3, 2):
        mapping[f"output{i}"] = f"decoder.stages.D{i}"
    mapping["output1"] = "decoder.head"
    return mapping


def state_dict_mismatch(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], limit: int = 10) -> list[str]:
    """Lines naming the keys of ``own`` missing from ``state``, the keys of ``state`` that ``own`` lacks, and the
    shapes that differ; an empty list when ``state`` fits ``own`` exactly."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    lines = []
    if missing:
        lines.append(f"missing from the checkpoint ({len(missing)}): {', '.join(missing[:limit])}")
    if unexpected:
        lines.append(f"unexpected in the checkpoint ({len(unexpected)}): {', '.join(unexpected[:limit])}")
    if shapes:
        lines.append(f"wrong shapes ({len(shapes)}): {'; '.join(shapes[: max(1, limit // 2)])}")
    return lines


def convert_official_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Rename the keys of an authors' state dict to this library's names (``resnet.fc.*`` is dropped)."""
    mapping = official_key_map(model)
    converted: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in _strip_prefix(state, prefixes=("module.",)).items():
        if key.startswith("resnet.fc."):
            continue
        prefix, _, rest = key.partition(".")
        converted[f"{mapping[prefix]}.{rest}" if prefix in mapping else key] = value  # unknown: keep its name
    lines = state_dict_mismatch(model.state_dict(), converted, limit=12)
    if lines:
        raise CheckpointMismatchError(
            "the checkpoint does not fit this model (is it an M2SNet checkpoint for an MSNet, or another encoder?)\n  "
            + "\n  ".join(lines)
        )
    return converted


def load_official_checkpoint(model: nn.Module, path_or_state_dict) -> nn.Module:
    """Load the authors' released M2SNet / MSNet weights (keys ``resnet.*``, ``x5_dem_1.*``, ``conv_3.norm.*``…).

    Strict: every key of the checkpoint is used and every parameter and buffer of ``model`` is filled, or a
    ``CheckpointMismatchError`` lists what is missing, unexpected or of the wrong shape.
    """
    state = path_or_state_dict
    if not isinstance(state, Mapping):
        state = load_state_dict_file(path_or_state_dict)
    model.load_state_dict(convert_official_state_dict(model, state), strict=True)
    return model
