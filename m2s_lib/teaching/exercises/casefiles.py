"""The files between the grader and the kernel: ``inputs/<grade_id>.npz|json`` (the cases, written by the trusted
side) and ``outputs/<grade_id>.npz|json`` (what the answer returned, written by the kernel).

Arrays are stored under ``"<case index>/<name>"`` in an ``.npz`` (no pickles: loaded with ``allow_pickle=False``);
the JSON holds the cases' names and parameters, and for outputs each case's status::

    {"grade_id": ..., "cases": [{"name": ..., "status": "ok" | "not_done" | "error" | "wrong_type" | "timeout",
                                 "message": "...", "warnings": ["..."], "monitor": ["..."], "seconds": 0.1}],
     "monitor": ["..."]}
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import Case

__all__ = ["GRADING_ENV", "MAX_OUTPUT_BYTES", "read_cases", "read_outputs", "write_cases", "write_outputs"]

GRADING_ENV = "M2S_GRADING_DIR"
MAX_OUTPUT_BYTES = 64 * 2**20  # an outputs file larger than this is not read


def _atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _npz(arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def write_cases(folder: Path, grade_id: str, cases: Sequence[Case]) -> None:
    """``folder/inputs/<grade_id>.npz`` and ``.json`` for ``cases`` (their ``feeds`` are not written)."""
    arrays, meta = {}, []
    for index, case in enumerate(cases):
        for key, tensor in case.arrays.items():
            arrays[f"{index}/{key}"] = tensor.detach().cpu().numpy()
        meta.append({"name": case.name, "params": case.params, "arrays": sorted(case.arrays)})
    _atomic(folder / "inputs" / f"{grade_id}.npz", _npz(arrays))
    _atomic(folder / "inputs" / f"{grade_id}.json",
            json.dumps({"grade_id": grade_id, "cases": meta}, indent=1).encode())  # fmt: skip


def read_cases(folder: Path, grade_id: str) -> list[Case]:
    """The cases of ``folder/inputs/<grade_id>.*`` (in the kernel)."""
    meta = json.loads((folder / "inputs" / f"{grade_id}.json").read_text(encoding="utf-8"))
    with np.load(folder / "inputs" / f"{grade_id}.npz", allow_pickle=False) as data:
        stored = {k: data[k] for k in data.files}
    cases = []
    for index, item in enumerate(meta["cases"]):
        arrays = {k: torch.from_numpy(stored[f"{index}/{k}"].copy()) for k in item["arrays"]}
        cases.append(Case(item["name"], dict(item["params"]), arrays))
    return cases


def write_outputs(folder: Path, grade_id: str, records: Sequence[Mapping[str, Any]],
                  arrays: Sequence[Mapping[str, np.ndarray]], monitor: Sequence[str]) -> None:  # fmt: skip
    """``folder/outputs/<grade_id>.npz`` and ``.json`` (in the kernel): one record and one array dict per case."""
    flat = {f"{index}/{key}": value for index, case in enumerate(arrays) for key, value in case.items()}
    _atomic(folder / "outputs" / f"{grade_id}.npz", _npz(flat))
    _atomic(folder / "outputs" / f"{grade_id}.json", json.dumps(
        {"grade_id": grade_id, "cases": list(records), "monitor": list(monitor)}, indent=1).encode())  # fmt: skip


def read_outputs(folder: Path, grade_id: str) -> tuple[dict[str, Any], list[dict[str, torch.Tensor]]] | None:
    """``(record, per-case tensors)`` from ``folder/outputs/<grade_id>.*`` (trusted side), or ``None`` when the
    kernel never wrote them. Only plain numeric arrays are accepted; the record is checked for its shape.
    Raises ``ValueError`` for a malformed or oversized file."""
    meta_path, npz_path = folder / "outputs" / f"{grade_id}.json", folder / "outputs" / f"{grade_id}.npz"
    if not meta_path.is_file() or meta_path.is_symlink():
        return None
    if not npz_path.is_file() or npz_path.is_symlink() or npz_path.stat().st_size > MAX_OUTPUT_BYTES:
        raise ValueError(f"outputs of {grade_id}: array file missing or larger than {MAX_OUTPUT_BYTES >> 20} MiB")
    if meta_path.stat().st_size > 2**20:
        raise ValueError(f"outputs of {grade_id}: record larger than 1 MiB")
    record = json.loads(meta_path.read_text(encoding="utf-8"))
    if not isinstance(record, dict) or not isinstance(record.get("cases"), list) or not all(
            isinstance(c, dict) for c in record["cases"]):  # fmt: skip
        raise ValueError(f"outputs of {grade_id}: malformed record")
    per_case: list[dict[str, torch.Tensor]] = [{} for _ in record["cases"]]
    with np.load(npz_path, allow_pickle=False) as data:
        for key in data.files:
            index, _, name = key.partition("/")
            array = data[key]
            if not index.isdigit() or int(index) >= len(per_case) or array.dtype.kind not in "biuf":
                raise ValueError(f"outputs of {grade_id}: unexpected array {key!r} ({array.dtype})")
            per_case[int(index)][name] = torch.from_numpy(np.array(array, copy=True))
    return record, per_case
