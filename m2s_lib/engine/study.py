"""The paper's ablations (Tables 9–11) as a seeded, paired, resumable study.

A *study* trains every chosen variant with every chosen seed, scores each run on the test sets (PraNet protocol,
pooled over test images) and reports per variant a mean ± sd with a 95 % confidence interval, and per claim of
the paper a *paired* difference (same seed) with its interval and a verdict (``m2s_lib.engine.stats``).

Paired design: a run's seed fixes its batches: the trainer draws the data order, the augmentations and the
multi-scale sizes of epoch ``e`` from generators seeded with ``(run.seed, e)``
(:data:`m2s_lib.engine.trainer.DATA_SCHEME`), whatever the network's build drew before. Two variants trained with
the same seed therefore see exactly the same batches; only their networks (and losses) differ.

Run folder (``out``)::

    study.yaml            the study's settings (a later call with other common settings is refused)
    runs.csv              one row per finished (variant, seed): scores, time, load; rewritten atomically
    superseded.csv        earlier rows of runs trained again because their fingerprint changed
    steps/<variant>-s<seed>.csv   per-step training loss and the early-training probe (see ``study_probe``)

A finished run (same variant, seed and configuration fingerprint) is never trained again: an interrupted study
continues with its first unfinished run (the interrupted run itself restarts from its first step).

>>> spec = study_spec("cpu")                               # the default CPU study (`make ablations`)
>>> spec.variants, spec.seeds                               # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ..atomic import write_text

__all__ = ["Variant", "Comparison", "VARIANTS", "COMPARISONS", "PRESETS", "StudySpec", "StudyError",
           "study_spec", "variant_config", "fingerprint", "read_results", "run_study", "adopt_runs",
           "lossnet_weights_note"]

METRICS = ("mDice", "mIoU", "MAE")
REFERENCE = "m2snet"


class StudyError(ValueError):
    """A study's settings are invalid or clash with the run folder (the message says what to do)."""


@dataclass(frozen=True)
class Variant:
    """One row of the paper's tables: ``overrides`` on top of the study's common configuration."""

    key: str
    table: str
    label: str
    overrides: dict[str, Any]


@dataclass(frozen=True)
class Comparison:
    """A claim of the paper: ``variant − baseline`` has the sign ``direction`` (+1 higher Dice, 0 "close")."""

    claim: str
    table: str
    variant: str
    baseline: str
    direction: int = 1


_LF = {"loss.lossnet_weight": 0.1}  # the authors' weight (their train.py); the paper's Eq. 4 prints 1
_NO_LF = {"loss.lossnet_weight": 0.0}
VARIANTS: dict[str, Variant] = {v.key: v for v in [
    Variant("fpn", "Table 9", "FPN baseline", {"model.name": "fpn", **_NO_LF}),
    Variant("su2", "Table 9", "+SU_2 (adjacent levels)", {"model.name": "msnet", "model.max_order": 2, **_NO_LF}),
    Variant("su3", "Table 9", "+SU_3", {"model.name": "msnet", "model.max_order": 3, **_NO_LF}),
    Variant("su4", "Table 9", "+SU_4", {"model.name": "msnet", "model.max_order": 4, **_NO_LF}),
    Variant("msnet", "Table 9", "+SU_5 = MSNet", {"model.name": "msnet", **_NO_LF}),
    Variant("msnet+lf", "Table 9", "MSNet + L_f", {"model.name": "msnet", **_LF}),
    Variant("au", "Table 9", "AU: addition units (MSNet)", {"model.name": "msnet", "model.unit": "au", **_NO_LF}),
    Variant("m2snet", "Table 10", "M2SNet (wBCE + wIoU + 0.1 L_f)", {"model.name": "m2snet", **_LF}),
    Variant("m2snet-nolf", "Table 10", "M2SNet w/o L_f", {"model.name": "m2snet", **_NO_LF}),
    Variant("m2snet-lfonly", "Table 10", "M2SNet w/o wBCE + wIoU (L_f alone)",
            {"model.name": "m2snet", "loss.structure_weight": 0.0, **_LF}),
    Variant("k1", "Table 11", "kernels (1)", {"model.name": "m2snet", "model.kernel_sizes": [1], **_LF}),
    Variant("k13", "Table 11", "kernels (1,3)", {"model.name": "m2snet", "model.kernel_sizes": [1, 3], **_LF}),
    Variant("k1357", "Table 11", "kernels (1,3,5,7)", {"model.name": "m2snet", "model.kernel_sizes": [1, 3, 5, 7],
                                                      **_LF}),
    Variant("gaussian", "Table 11", "Gaussian weights (1,3,5)", {"model.name": "m2snet", "model.filter_weights":
                                                                 "gaussian", "model.msu_impl": "dense", **_LF}),
    # Not a paper row: the early-training fix candidate (one F_k + BatchNorm per unit instead of shared ones).
    Variant("m2snet-nolf-unshared", "extra", "M2SNet w/o L_f, unshared F_k", {"model.name": "m2snet",
                                                                             "model.share_filters": False, **_NO_LF}),
]}

COMPARISONS: tuple[Comparison, ...] = (
    Comparison("subtraction units beat the FPN baseline", "Table 9", "su2", "fpn"),
    Comparison("higher-order units help (SU_5 vs SU_2)", "Table 9", "msnet", "su2"),
    Comparison("the SU pyramid (MSNet) beats the FPN baseline", "Table 9", "msnet", "fpn"),
    Comparison("subtraction beats addition", "Table 9", "msnet", "au"),
    Comparison("L_f helps MSNet", "Table 9", "msnet+lf", "msnet"),
    Comparison("intra-layer multi-scale units beat SU (both w/o L_f)", "Table 9/11", "m2snet-nolf", "msnet"),
    Comparison("M2SNet beats MSNet (as published: with L_f vs without)", "Table 9/10", "m2snet", "msnet"),
    Comparison("L_f helps M2SNet", "Table 10", "m2snet", "m2snet-nolf"),
    Comparison("wBCE + wIoU help (vs L_f alone)", "Table 10", "m2snet", "m2snet-lfonly"),
    Comparison("kernels (1,3,5) beat (1)", "Table 11", "m2snet", "k1"),
    Comparison("kernels (1,3,5) beat (1,3)", "Table 11", "m2snet", "k13"),
    Comparison("kernels (1,3,5,7) are close to (1,3,5)", "Table 11", "k1357", "m2snet", direction=0),
    Comparison("all-ones weights beat Gaussian weights", "Table 11", "m2snet", "gaussian"),
)

# The default CPU study: what `make ablations` runs on two cores (docs/ablations.md explains why and gives its wall time).
CPU_OVERRIDES: dict[str, Any] = {
    "data.size": 96,
    "data.train_sizes": [64, 72, 80, 88, 96],  # m2s_lib.data.train_sizes_for(96)
    "data.val_fraction": 0.0,  # every variant keeps its last epoch, as the authors do
    "data.synthetic_size": 128,
    "data.synthetic_n": 400,
    "data.synthetic_n_test": 20,
    "data.synthetic_difficulty": "teaching",
    "optim.epochs": 6,
    "loss.lossnet_weights": None,  # random frozen VGG-16: ImageNet weights cannot be downloaded offline
    "loss.lossnet_input_size": 64,
    "run.progress": False,
}
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"profile": "tiny", "overrides": CPU_OVERRIDES, "seeds": [0, 1, 2],
            "variants": ["msnet", "m2snet-nolf", "au", "fpn", "m2snet", "m2snet-nolf-unshared"]},  # cheap pairs first
    "paper": {"profile": "paper-polyp", "overrides": {"data.val_fraction": 0.0, "run.progress": False},
              "seeds": [0, 1, 2], "variants": [k for k in VARIANTS if VARIANTS[k].table != "extra"]},
    # The first 100 steps (2 of 6 epochs, same schedule, same batches) of the cpu study's runs: section 6 of
    # notebook 09 compares these with the cpu study's own first 100 steps.
    "early": {"profile": "tiny", "overrides": CPU_OVERRIDES, "seeds": [0, 1, 2], "stop_after_epoch": 2,
              "variants": ["msnet", "m2snet-nolf", "m2snet-nolf-unshared"]},
    "smoke": {"profile": "tiny", "seeds": [0, 1], "variants": ["msnet", "m2snet"],
              "overrides": {**CPU_OVERRIDES, "optim.epochs": 1, "run.max_steps_per_epoch": 1, "data.size": 32,
                            "data.train_sizes": [32], "data.synthetic_size": 48, "data.synthetic_n": 8,
                            "data.synthetic_n_test": 2, "loss.lossnet_input_size": 32}},
}
# Settings that may differ between calls on the same folder (where and how, not what is trained).
_FREE_KEYS = ("run.device", "run.progress", "run.progress_interval", "run.out", "data.num_workers",
              "data.synthetic_dir")


@dataclass
class StudySpec:
    """What a study trains: a profile, common overrides, variant keys, seeds, and the probe's steps."""

    profile: str = "tiny"
    overrides: dict[str, Any] = field(default_factory=dict)
    preset: str = ""
    variants: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    probe_steps: list[int] = field(default_factory=lambda: [0, 5, 10, 20, 50, 100, 200, 300])
    probe_images: int = 20
    stop_after_epoch: int | None = None  # early-training studies: the full run's schedule, cut after this epoch

    def check(self) -> StudySpec:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise StudyError(f"unknown variant(s) {unknown}: choose from {', '.join(VARIANTS)}")
        if not self.variants or not self.seeds:
            raise StudyError("a study needs at least one variant and one seed (≥ 3 seeds for a confidence interval)")
        if len(set(self.seeds)) != len(self.seeds):
            raise StudyError(f"seeds {self.seeds} repeat a value")
        return self


def study_spec(preset: str = "cpu", *, profile: str | None = None, variants: Sequence[str] | None = None,
               seeds: Sequence[int] | None = None, overrides: dict[str, Any] | None = None) -> StudySpec:
    """The preset's spec (``cpu``, ``paper``, ``smoke``) with the given replacements; extra overrides are added."""
    if preset not in PRESETS:
        raise StudyError(f"unknown study preset {preset!r}: choose from {', '.join(PRESETS)}")
    p = PRESETS[preset]
    spec = StudySpec(profile=profile or p["profile"], overrides={**p["overrides"], **(overrides or {})}, preset=preset,
                     variants=list(variants or p["variants"]), seeds=[int(s) for s in (seeds or p["seeds"])],
                     stop_after_epoch=p.get("stop_after_epoch"))
    return spec.check()


def variant_config(spec: StudySpec, key: str, seed: int):
    """The :class:`~m2s_lib.config.Config` of one run: profile → common overrides → variant → seed."""
    from ..config import load_config

    return load_config(profile=spec.profile).override(spec.overrides).override(VARIANTS[key].overrides).override(
        {"run.seed": int(seed)})


def fingerprint(cfg, stop_after_epoch: int | None = None) -> str:
    """A short hash of everything that decides a run's result (not where or how verbosely it runs)."""
    from .trainer import DATA_SCHEME

    flat = {k: v for k, v in _flat(cfg.to_dict()).items() if not k.startswith(_FREE_KEYS)}
    flat["structure_weight"] = float(flat.pop("loss.structure_weight", 1.0))  # its key before it was a setting
    flat["data_scheme"] = DATA_SCHEME  # runs trained under an earlier seeding scheme are not reused
    if stop_after_epoch is not None:
        flat["stop_after_epoch"] = int(stop_after_epoch)
    return hashlib.sha1(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flat(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def lossnet_weights_note(cfg) -> str:
    """Which VGG-16 the L_f term used, in words (for the report)."""
    w = cfg.loss.lossnet_weights
    if w is None:
        return "a RANDOM frozen VGG-16 (ImageNet weights cannot be downloaded offline): L_f rows test the mechanics"
    return f"VGG-16 weights {w!r} (torchvision ImageNet weights)" if w == "imagenet" else f"VGG-16 weights from {w}"


# ---------------------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------------------
#: Columns of runs.csv and superseded.csv read as text: a fingerprint such as "0922e9652208" is not a number.
_TEXT_COLUMNS = {"variant": str, "fingerprint": str}


def read_results(out: str | os.PathLike) -> pd.DataFrame:
    """The finished runs of the study in ``out`` (an empty table when there are none). A row that is not whole
    (a value missing or not finite, no ``finished_utc``, the file cut short inside it) is moved to
    ``superseded.csv``, said in one line, and its run counts as not done; a file that is no study table is a
    :class:`StudyError` naming it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no repair lock (one process per study folder there)
        fcntl = None
    path = Path(out) / "runs.csv"
    if not path.is_file():
        return pd.DataFrame(columns=["variant", "seed", "fingerprint"])
    for attempt in range(2):
        raw = path.read_bytes()
        try:
            done = pd.read_csv(path, dtype=_TEXT_COLUMNS)
        except (ValueError, UnicodeDecodeError) as err:  # pandas' ParserError and EmptyDataError are ValueErrors
            raise StudyError(f"{path} is not a study table ({' '.join(str(err).split())[:100]}): move it away (its "
                             "runs are then trained again) or restore it") from None
        missing = [c for c in ("variant", "seed", "fingerprint", *METRICS, "finished_utc") if c not in done.columns]
        if missing:
            raise StudyError(f"{path} is not a study table (no column {', '.join(missing)}): move it away (its runs "
                             "are then trained again) or restore it")
        needed = [c for c in done.columns if c != "reused_from" and not c.startswith("Dice ")]
        numbers = done[[c for c in needed if c not in ("variant", "fingerprint", "finished_utc")]]
        finite = numbers.apply(pd.to_numeric, errors="coerce").astype(float).map(lambda v: abs(v) < float("inf"))
        bad = (done[needed].isna().any(axis=1) | ~finite.all(axis=1)
               | ~done["finished_utc"].astype(str).str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"))
        if len(done) and not raw.endswith(b"\n"):
            bad.iloc[-1] = True  # the file ends inside its last row
        if not bad.any():
            return done
        with open(path.with_name(".runs.csv.repair"), "a+") as handle:  # one repair at a time (not the study's .lock)
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)
            if path.read_bytes() != raw and attempt == 0:
                continue  # changed meanwhile: read it again
            damaged = done[bad]
            _supersede(path.parent, damaged)
            done = done[~bad].reset_index(drop=True)
            write_text(path, done.to_csv(index=False))
        names = ", ".join(f"{v} seed {str(s).removesuffix('.0')}" for v, s in zip(damaged["variant"], damaged["seed"]))
        print(f"{path}: {len(damaged)} damaged row(s) ({names}: a value missing, not finite or cut short) moved to "
              "superseded.csv; their runs are trained again", flush=True)
        return done
    return done


def _prepare_folder(out: Path, spec: StudySpec) -> None:
    """Write ``study.yaml``, or check that the folder's study has the same common settings (variants and seeds
    may be added to a finished study)."""
    path = out / "study.yaml"
    mine = {"profile": spec.profile, "stop_after_epoch": spec.stop_after_epoch,
            "overrides": {k: v for k, v in spec.overrides.items() if not k.startswith(_FREE_KEYS)}}
    if path.is_file():
        old = yaml.safe_load(path.read_text()) or {}
        theirs = {"profile": old.get("profile"), "stop_after_epoch": old.get("stop_after_epoch"),
                  "overrides": {k: v for k, v in (old.get("overrides") or {}).items() if not k.startswith(_FREE_KEYS)}}
        if theirs != mine:
            keys = sorted(k for k in set(mine["overrides"]) | set(theirs["overrides"])
                          if mine["overrides"].get(k) != theirs["overrides"].get(k))
            what = ", ".join(keys[:6]) or "profile"
            raise StudyError(f"{out} holds a study with other settings ({what}); its runs are kept. Choose another "
                             "--out folder, or repeat that study's settings to continue it")
        spec.variants = list(dict.fromkeys([*spec.variants, *old.get("variants", [])]))
        spec.seeds = list(dict.fromkeys([*spec.seeds, *old.get("seeds", [])]))
    write_text(path, yaml.safe_dump(asdict(spec), sort_keys=False))


def _pending(spec: StudySpec, done: pd.DataFrame, keys: Sequence[str], seeds: Sequence[int]):
    """``(key, seed, config, fingerprint)`` of the runs still to do, variant by variant with all its seeds, in the
    order of ``keys`` (the paper's rows first, then the extra rows). A study stopped early thus holds complete,
    paired comparisons of its first variants, each with every seed, rather than one seed of everything."""
    finished = _finished(done)
    jobs = []
    ordered = [k for k in keys if VARIANTS[k].table != "extra"] + [k for k in keys if VARIANTS[k].table == "extra"]
    for key in ordered:
        for seed in seeds:
            cfg = variant_config(spec, key, seed)
            fp = fingerprint(cfg, spec.stop_after_epoch)
            if (key, int(seed), fp) not in finished:
                jobs.append((key, int(seed), cfg, fp))
    return jobs


def run_study(spec: StudySpec, out: str | os.PathLike, *, device: str | None = None, progress: bool = True,
              log: Callable[[str], None] = print, max_runs: int | None = None,
              reuse: Sequence[str | os.PathLike] = ()) -> pd.DataFrame:
    """Train and score every unfinished (variant, seed) of ``spec`` into ``out``; returns all finished runs.

    Several processes may work on the same folder at once (``m2s ablations run --jobs 2``): each claims its next
    run with a claim file (``claims/<variant>-s<seed>.pid``; a claim of a process that no longer runs is taken
    over) and appends its row under a file lock. ``max_runs`` stops after that many new runs (tests; a later call
    continues). ``reuse``: study folders whose runs of the same fingerprint are copied, not trained
    (:func:`adopt_runs`). Each finished run is appended to ``runs.csv`` at once (atomic rewrite), so an
    interruption loses at most the runs in progress.
    """
    from ..progress import progress_bar as tqdm

    spec.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        _prepare_folder(out, spec)
    if device:
        spec.overrides = {**spec.overrides, "run.device": device}
    copied = adopt_runs(out, spec, reuse)
    if copied:
        log(f"{out}: {len(copied)} run(s) of the same fingerprint copied from {', '.join(map(str, reuse))}")
    jobs = _pending(spec, read_results(out), spec.variants, spec.seeds)
    skipped = len(spec.variants) * len(spec.seeds) - len(jobs)
    if skipped:
        log(f"{out}: {skipped} finished run(s) kept, {len(jobs)} to train")
    start, trained = time.perf_counter(), 0
    bar = tqdm(total=len(jobs), desc="ablation runs", unit="run", disable=not progress)
    for key, seed, cfg, fp in jobs:
        if max_runs is not None and trained >= max_runs:
            break
        if not _claim(out, key, seed):
            bar.update(1)
            continue
        try:
            with _locked(out):
                finished = _finished(read_results(out))
            if (key, seed, fp) in finished:
                bar.update(1)
                continue
            bar.set_postfix_str(f"{key} seed {seed}")
            row = train_and_score(key, seed, cfg, spec, out)
            row.update(fingerprint=fp)
            _record(out, row)
        finally:
            _release(out, key, seed)
        trained += 1
        bar.update(1)
        log(f"{key:>14} seed {seed}: Dice {row['mDice']:.4f}  IoU {row['mIoU']:.4f}  MAE {row['MAE']:.4f}  "
            f"({row['steps']} steps, {row['train_s']:.0f} s training, load {row['load_1min']:.1f})")
    bar.close()
    if trained:
        log(f"{trained} run(s) in {time.perf_counter() - start:.0f} s")
    return read_results(out)


def _record(out: Path, row: dict[str, Any]) -> None:
    """Add a finished run to ``runs.csv`` (under the folder's lock; see :func:`_append_row`)."""
    with _locked(out):
        _append_row(out, row)


def _append_row(out: Path, row: dict[str, Any]) -> None:
    """Add a row to ``runs.csv`` (the caller holds the lock). An earlier row of the same (variant, seed), trained
    under another fingerprint (other code or seeding scheme), is moved to ``superseded.csv``, not kept beside it."""
    done = read_results(out)
    same = (done["variant"].astype(str) == row["variant"]) & (done["seed"].astype(int) == int(row["seed"]))
    if same.any():
        _supersede(out, done[same])
    done = pd.concat([done[~same], pd.DataFrame([row])], ignore_index=True)
    write_text(out / "runs.csv", done.to_csv(index=False))


def _supersede(out: Path, rows: pd.DataFrame) -> None:
    """Keep ``rows`` (runs trained again, or damaged) in ``superseded.csv``: nothing a study trained is lost."""
    old = out / "superseded.csv"
    kept = pd.read_csv(old, dtype=_TEXT_COLUMNS) if old.is_file() else pd.DataFrame()
    write_text(old, pd.concat([kept, rows], ignore_index=True).to_csv(index=False))


def adopt_runs(out: str | os.PathLike, spec: StudySpec, sources: Sequence[str | os.PathLike]) -> list[str]:
    """Copy into ``out`` the finished runs of other study folders that this study would train with exactly the same
    fingerprint (same variant, seed and everything that decides the result), with their ``steps/`` logs, instead of
    training them again. Their rows keep their scores and times and name their folder in ``reused_from``.
    Returns ``"<variant> seed <seed>"`` of each run copied; sources that hold no study are skipped."""
    out = Path(out)
    copied = []
    with _locked(out):
        wanted = {(k, s, fp) for k, s, _, fp in _pending(spec, read_results(out), spec.variants, spec.seeds)}
        for src in map(Path, sources):
            if not (src / "runs.csv").is_file() or src.resolve() == out.resolve():
                continue
            for row in read_results(src).to_dict("records"):
                key = (str(row["variant"]), int(row["seed"]), str(row["fingerprint"]))
                if key not in wanted:
                    continue
                log_file = src / "steps" / f"{key[0]}-s{key[1]}.csv"
                if log_file.is_file():
                    write_text(out / "steps" / log_file.name, log_file.read_text())
                _append_row(out, {**row, "reused_from": str(src)})
                wanted.discard(key)
                copied.append(f"{key[0]} seed {key[1]}")
    return copied


def _finished(done: pd.DataFrame) -> set[tuple[str, int, str]]:
    return set(zip(done["variant"].astype(str), done["seed"].astype(int), done["fingerprint"].astype(str)))


@contextmanager
def _locked(out: Path):
    """An exclusive lock on ``out/.lock`` (POSIX ``flock``; elsewhere no lock: run one process per folder)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(out / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim(out: Path, key: str, seed: int) -> bool:
    """Claim the run for this process; False when a live process holds it."""
    path = out / "claims" / f"{key}-s{seed}.pid"
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        if path.is_file():
            try:
                pid = int(path.read_text().strip() or 0)
            except ValueError:
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                return False
        write_text(path, str(os.getpid()))
    return True


def _release(out: Path, key: str, seed: int) -> None:
    (out / "claims" / f"{key}-s{seed}.pid").unlink(missing_ok=True)


def train_and_score(key: str, seed: int, cfg, spec: StudySpec, out: Path) -> dict[str, Any]:
    """One run: train (paired batches, per-step log and probe), then score every test set."""
    import torch

    from ..data.layout import find_test_sets
    from .evaluate import evaluate_folder
    from .study_probe import EarlyProbe
    from .trainer import Trainer

    t0, cpu0 = time.perf_counter(), time.process_time()
    probe = EarlyProbe(spec.probe_steps, spec.probe_images)
    trainer = Trainer(cfg, None, callbacks=[probe], log=lambda message: None)
    trainer.fit(stop_after_epoch=spec.stop_after_epoch)
    train_s = time.perf_counter() - t0
    write_text(out / "steps" / f"{key}-s{seed}.csv", probe.table().to_csv(index=False))
    t1 = time.perf_counter()
    per_set = {}
    for name, folder in find_test_sets(trainer.data_root).items():
        scores, _ = evaluate_folder(trainer.model, folder, size=cfg.data.eval_size, progress=False,
                                    measures=METRICS)
        per_set[name] = scores
    n = sum(s["n"] for s in per_set.values())
    pooled = {m: sum(s[m] * s["n"] for s in per_set.values()) / n for m in METRICS}
    return {"variant": key, "seed": int(seed), **pooled, "n_test": int(n),
            **{f"Dice {name}": s["mDice"] for name, s in per_set.items()},
            "steps": trainer.global_step, "train_s": round(train_s, 2),
            "eval_s": round(time.perf_counter() - t1, 2), "cpu_s": round(time.process_time() - cpu0, 2),
            "threads": torch.get_num_threads(),
            "load_1min": os.getloadavg()[0], "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
