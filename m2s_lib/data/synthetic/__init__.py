"""Procedural datasets that stand in for the paper's four tasks when no real data can be downloaded.

Every task is written to disk in the layout the real dataset has after ``m2s data download`` normalised it, so the
same loaders, commands and notebooks run on either. Images are deterministic functions of ``(seed, task, split,
index)``: the same seed gives the same bytes whatever the number of worker processes; different seeds differ.

Layouts (``size`` is the image width in pixels; heights follow each imitated dataset's aspect ratio):

``polyp`` (PraNet split)::

    out/TrainDataset/{images/*.jpg, masks/*.png}                      n images
    out/TestDataset/<set>/{images/*.jpg, masks/*.png}                 n_test images per set
        <set> in CVC-300 (H = 0.87 W), CVC-ClinicDB (0.75 W), CVC-ColonDB (0.87 W), ETIS-LaribPolypDB (0.79 W),
        Kvasir (square); W = size

    Like the real training set (900 Kvasir + 550 CVC-ClinicDB frames), 62 % of the training frames follow the
    Kvasir style (square) and 38 % the CVC-ClinicDB style (4:3). The five test styles differ a little, as the real sets do:
    polyp size (ETIS and ColonDB: many small polyps; Kvasir: large ones), illumination, blur, texture scale and the
    black frame of the CVC cameras.

``busi`` (Dataset_BUSI_with_GT after normalisation)::

    out/images/*.png, out/masks/*.png (grayscale, size x size)
    out/labels.csv                    columns name,class with class in benign / malignant / normal
    Classes in the real proportions 437 : 210 : 133. Normal images have an empty mask. No test split: the paper
    uses 4-fold cross-validation (``m2s_lib.data.splits.busi_folds``).

``covid`` (COVID-19 lung infection, Inf-Net style split)::

    out/TrainDataset/{images/*.jpg, masks/*.png}            n slices, size x size
    out/TestDataset/COVID-19/{images/*.jpg, masks/*.png}    n_test slices

``oct`` (GOALS 2022 layer segmentation after ``m2s data download goals --source ...``)::

    out/TrainDataset/{images/*.png, masks/*.png}            n B-scans, W = size, H = round(size * 800 / 1100)
    out/TestDataset/GOALS/{images/*.png, masks/*.png}       n_test B-scans
    Label PNGs hold the GOALS values: 0 RNFL, 80 GCIPL, 160 choroid, 255 everything else
    (``GOALS_CLASS_VALUES`` maps them to class ids 0 background, 1 RNFL, 2 GCIPL, 3 choroid).

Each dataset folder holds ``m2s_synthetic.json`` (the generator's parameters and the file counts) so that
:func:`ensure_synthetic` can tell whether a folder already holds what was asked for.

Masks are written as PNG with values 0/255 (binary tasks). The image generators are plain numpy/scipy; ~20-40 ms
per 352x352 image on one core.

Modules: ``base`` (random fields, shapes, the error), ``polyp`` (colonoscopy frames, styles, difficulty levels),
``scans`` (breast ultrasound, COVID CT, OCT), ``generate`` (planning, writing, manifests, ``ensure_*``, statistics).
A figure of a dataset is :func:`m2s_lib.teaching.viz.gallery`.
"""
from .base import SyntheticDataError
from .generate import (
    BUSI_CLASSES,
    GENERATOR_VERSION,
    MANIFEST,
    dataset_name,
    default_n_test,
    ensure_dataset,
    ensure_synthetic,
    generate,
    mask_statistics,
    read_manifest,
)
from .polyp import DIFFICULTIES, POLYP_STYLES, PolypStyle, polyp_sample, polyp_style
from .scans import busi_sample, covid_sample, oct_sample

__all__ = [
    "BUSI_CLASSES",
    "DIFFICULTIES",
    "GENERATOR_VERSION",
    "MANIFEST",
    "POLYP_STYLES",
    "PolypStyle",
    "SyntheticDataError",
    "busi_sample",
    "covid_sample",
    "dataset_name",
    "default_n_test",
    "ensure_dataset",
    "ensure_synthetic",
    "generate",
    "mask_statistics",
    "oct_sample",
    "polyp_sample",
    "polyp_style",
    "read_manifest",
]
