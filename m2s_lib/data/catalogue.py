"""The catalogue of the paper's real datasets: where each archive comes from, what it should hold, how to cite it."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..constants import POLYP_TEST_SETS

__all__ = ["DATASETS", "PARTS", "CountMismatchWarning", "Dataset", "DownloadError", "Part", "drive_url",
           "list_datasets", "resolve"]

# Published image counts of the five polyp test sets.
POLYP_TEST_COUNTS = dict(zip(POLYP_TEST_SETS, (100, 62, 380, 196, 60)))


class DownloadError(RuntimeError):
    """A dataset could not be fetched, unpacked or normalised; the message says what to do."""


class CountMismatchWarning(UserWarning):
    """A dataset folder holds another number of images than the published dataset."""


@dataclass(frozen=True)
class Part:
    """One downloadable archive of a dataset."""

    name: str  # e.g. "polyp-train"
    gdrive_id: str | None  # None: manual download only
    archive: str  # local file name under DIR/.downloads
    dest: str  # destination under DIR ("TrainDataset", "TestDataset" or "." )
    kind: str  # normaliser: "single", "sets", "busi", "goals"
    expected: dict[str, int | None] = field(default_factory=dict)  # folder under DIR -> number of images
    default_set: str = ""  # name of the set when a "sets" archive holds one unnamed images/masks pair
    baidu: str = ""  # BaiduYun mirror from the authors' README ("url (code xxxx)")


@dataclass(frozen=True)
class Dataset:
    name: str
    task: str
    parts: tuple[Part, ...]
    description: str
    citation: str
    licence: str
    manual: str = ""


def drive_url(gdrive_id: str) -> str:
    return f"https://drive.google.com/file/d/{gdrive_id}/view"


_POLYP_CITE = ("PraNet split (Fan et al., MICCAI 2020): Kvasir-SEG (Jha et al., MMM 2020), CVC-ClinicDB (Bernal et "
               "al., CMIG 2015), CVC-ColonDB (Tajbakhsh et al., IEEE TMI 2015), ETIS-LaribPolypDB (Silva et al., "
               "IJCARS 2014), CVC-300 / EndoScene (Vazquez et al., JHE 2017)")
DATASETS: dict[str, Dataset] = {
    "polyp": Dataset(
        name="polyp", task="polyp",
        parts=(
            Part("polyp-train", "1lODorfB33jbd-im-qrtUgWnZXxB94F55", "polyp-train.zip", "TrainDataset", "single",
                 {"TrainDataset": 1450}, baidu="https://pan.baidu.com/s/17F_n2Mx18osW44vIdYdu1g (code 342v)"),
            Part("polyp-test", "1o8OfBvYE6K-EpDyvzsmMPndnUMwb540R", "polyp-test.zip", "TestDataset", "sets",
                 {f"TestDataset/{s}": n for s, n in sorted(POLYP_TEST_COUNTS.items())},
                 baidu="https://pan.baidu.com/s/1uu44ryvB42uzZRBxnf8-WA (code 4e10)"),
        ),
        description="image polyp segmentation, PraNet split: train 1450, five test sets (798 images)",
        citation=_POLYP_CITE,
        licence="research/education use; each source dataset has its own terms (e.g. Kvasir-SEG: research and "
                "educational use with citation; CVC sets: research use with citation)"),
    "video-polyp": Dataset(
        name="video-polyp", task="polyp",
        parts=(
            Part("video-polyp-train", "1GjYKjyIrQciyii09GEwyLbck2DauV_rw", "video-polyp-train.zip", "TrainDataset",
                 "sets", {}, default_set="train",
                 baidu="https://pan.baidu.com/s/1ewPnV38Kd9XVSMd1F8f9Vw (code 4b45)"),
            Part("video-polyp-test", "1jjZKBcb1zlRn-TgBaxQ8mjoQj8LG8z4p", "video-polyp-test.zip", "TestDataset",
                 "sets", {}, default_set="test",
                 baidu="https://pan.baidu.com/s/1cLUZ9Vp7vx5vaLP8M27Zdw (code ki4a)"),
        ),
        description="video polyp segmentation: CVC-300 (12 clips) and CVC-612 (29 clips), clips split 60/20/20 "
                    "(PNS-Net protocol); file counts are not published, so they are only reported",
        citation="PNS-Net (Ji et al., MICCAI 2021); CVC-ClinicDB/CVC-612 (Bernal et al., CMIG 2015); CVC-300 "
                 "(Vazquez et al., JHE 2017)",
        licence="research use with citation (terms of the CVC datasets)"),
    "covid": Dataset(
        name="covid", task="covid",
        parts=(
            Part("covid-train", "1FHx0Cqkq9iYjEMN3Ldm9FnZ4Vr1u3p-j", "covid-train.zip", "TrainDataset", "single",
                 {"TrainDataset": 894}, baidu="https://pan.baidu.com/s/1C5MyJV6olEvHfP33O298YQ (code uoiy)"),
            Part("covid-test", "1ufi73f_rhq15DElN_gJTO1tTFtUmqDsB", "covid-test.zip", "TestDataset", "sets",
                 {"TestDataset/COVID-19": 383}, default_set="COVID-19",
                 baidu="https://pan.baidu.com/s/1yCPLB-LbQoyPUJxrVbF-Yg (code r867)"),
        ),
        description="COVID-19 lung infection on CT slices: 1,277 slices sampled from two public sets, 894 train / "
                    "383 test (paper); counts are the paper's, the archive may differ",
        citation="COVID-19 CT segmentation dataset (MedSeg, medicalsegmentation.com/covid19); COVID-19 CT Lung and "
                 "Infection Segmentation Dataset (Ma et al., Zenodo 3757476)",
        licence="see each source (MedSeg and Zenodo record 3757476); research use with citation"),
    "busi": Dataset(
        name="busi", task="busi",
        parts=(
            Part("busi", "1t3cyyTbA0mikL8L2rWRtREdWTLfmA3qL", "busi.zip", ".", "busi", {".": 780},
                 baidu="https://pan.baidu.com/s/1AjiTQetB-xdp-d8pAnAPeg (code 409p)"),
        ),
        description="breast ultrasound (BUSI): 780 images of 600 women, benign 437 / malignant 210 / normal 133; "
                    "4-fold cross-validation",
        citation="Al-Dhabyani, Gomaa, Khaled, Fahmy: Dataset of breast ultrasound images. Data in Brief 28, 104863 "
                 "(2020)",
        licence="published with an open-access Data in Brief article; check the terms of the copy you use",
        manual="The public original is 'Dataset_BUSI_with_GT' (folders benign/, malignant/, normal/ with "
               "'<name>_mask.png' files), e.g. from the Data in Brief article's data link; pass the zip or folder "
               "with --source."),
    "goals": Dataset(
        name="goals", task="oct",
        parts=(Part("goals", None, "goals.zip", "TrainDataset", "goals", {"TrainDataset": 100}),),
        description="GOALS 2022 (MICCAI challenge) circumpapillary OCT layer segmentation: 100 labelled training "
                    "B-scans (+100 validation, 100 test); labels 0 RNFL, 80 GCIPL, 160 choroid, 255 background",
        citation="Fang, Li, Fu, Wu, Zhang, Xu: Dataset and evaluation algorithm design for GOALS challenge. "
                 "OMIA 2022 (arXiv 2207.14447)",
        licence="challenge data: registration and the organisers' terms apply (no redistribution)",
        manual="No public link: register for the GOALS 2022 challenge (https://aistudio.baidu.com/aistudio/"
               "competition/detail/230/0/introduction), download the training set (folders Image/ and "
               "Layer_Masks/) and run `m2s data download goals --root DIR --source <zip or folder>`."),
}
PARTS: dict[str, Part] = {p.name: p for d in DATASETS.values() for p in d.parts}
_TASK_ALIASES = {"oct": "goals"}


def resolve(name: str) -> tuple[Dataset, tuple[Part, ...]]:
    """The dataset and the parts a name refers to (a dataset name, a part name, or the task name 'oct')."""
    name = _TASK_ALIASES.get(name, name)
    if name in DATASETS:
        return DATASETS[name], DATASETS[name].parts
    if name in PARTS:
        ds = next(d for d in DATASETS.values() if PARTS[name] in d.parts)
        return ds, (PARTS[name],)
    known = ", ".join(sorted(set(DATASETS) | set(PARTS)))
    raise DownloadError(f"unknown dataset {name!r}: choose one of {known} (`m2s data list`)")


def list_datasets() -> str:
    """A text table of the datasets, their parts, Drive ids, expected counts and manual routes."""
    lines = []
    for ds in DATASETS.values():
        lines.append(f"{ds.name} (task {ds.task}): {ds.description}")
        for p in ds.parts:
            src = drive_url(p.gdrive_id) if p.gdrive_id else "manual download only"
            exp = ", ".join(f"{k} {v}" for k, v in p.expected.items()) or "counts not published"
            lines.append(f"  {p.name:18s} {src}")
            lines.append(f"  {'':18s} images expected: {exp}")
            if p.baidu:
                lines.append(f"  {'':18s} mirror: {p.baidu}")
        if ds.manual:
            lines.append(f"  manual: {ds.manual}")
        lines.append(f"  cite: {ds.citation}")
        lines.append(f"  licence: {ds.licence}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
