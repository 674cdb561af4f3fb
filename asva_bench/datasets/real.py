"""Readers for the paper's datasets (user-supplied folders, docs/datasets.md)."""

from __future__ import annotations

from pathlib import Path

from ..protocol import PAPER_GREATEST_HITS
from .base import DatasetError, DatasetSpec, Manifest, VideoEntry

AVSYNC15_CLASSES = {
    "baby_babbling_crying": "baby babbling crying",
    "dog_barking": "dog barking",
    "hammering": "hammering",
    "striking_bowling": "striking bowling",
    "cap_gun_shooting": "cap gun shooting",
    "chicken_crowing": "chicken crowing",
    "frog_croaking": "frog croaking",
    "lions_roaring": "lions roaring",
    "machine_gun_shooting": "machine gun shooting",
    "playing_cello": "playing cello",
    "playing_trombone": "playing trombone",
    "playing_trumpet": "playing trumpet",
    "playing_violin__fiddle": "playing violin fiddle",
    "sharpen_knife": "sharpen knife",
    "toilet_flushing": "toilet flushing",
}

LANDSCAPES_CLASSES = {c.replace(" ", "_"): c for c in (
    "explosion", "fire crackling", "raining", "splashing water", "squishing water",
    "thunder", "underwater bubbling", "waterfall burbling", "wind noise")}


def read_split_files(root: Path, spec: DatasetSpec, splits=("train", "test"),
                     video_dir: str = "videos") -> Manifest:
    """Layout: <root>/<split>.txt lists '<class_folder>/<file>.mp4' under <root>/videos/."""
    vroot = root / video_dir
    if not vroot.is_dir():
        raise DatasetError(f"dataset '{spec.name}': {vroot} is missing.\n{spec.missing_message(root)}")
    entries = []
    for split in splits:
        listing = root / f"{split}.txt"
        if not listing.is_file():
            raise DatasetError(f"dataset '{spec.name}': split file {listing} is missing; "
                               f"it lists one '<class_folder>/<file>.mp4' per line.\n"
                               f"Expected layout:\n{spec.layout}")
        for n, line in enumerate(listing.read_text().splitlines(), 1):
            rel = line.strip()
            if not rel or rel.startswith("#"):
                continue
            cls = rel.split("/")[0] if "/" in rel else spec.text_for("")
            if "/" in rel and not (vroot / cls).is_dir():
                raise DatasetError(f"dataset '{spec.name}': {listing}:{n} names class folder "
                                   f"'{cls}', but {vroot / cls} does not exist; restore the folder "
                                   f"or remove its lines from {listing.name}")
            path = vroot / rel
            if not path.is_file():
                raise DatasetError(f"dataset '{spec.name}': {listing}:{n} names {rel}, but {path} "
                                   f"does not exist; restore the file or remove the line")
            cls_name = cls if "/" in rel else spec.name
            entries.append(VideoEntry(rel, cls_name, spec.text_for(cls_name), split, str(path)))
    return Manifest(spec.name, str(root), entries, spec.protocol)


def read_split_folders(root: Path, spec: DatasetSpec) -> Manifest:
    """Layout: <root>/videos/{train,test}/<class>/<file>.mp4 (Landscapes)."""
    entries = []
    for split in ("train", "test"):
        sroot = root / "videos" / split
        if not sroot.is_dir():
            raise DatasetError(f"dataset '{spec.name}': {sroot} is missing.\n{spec.missing_message(root)}")
        for cdir in sorted(p for p in sroot.iterdir() if p.is_dir()):
            for f in sorted(cdir.glob("*.mp4")):
                rel = f"{split}/{cdir.name}/{f.name}"
                entries.append(VideoEntry(rel, cdir.name, spec.text_for(cdir.name), split, str(f)))
    return Manifest(spec.name, str(root), entries, spec.protocol)


def _published(name: str, description: str, reader, layout: str, train: int, test: int, classes: int,
               class_texts: dict, **fields) -> DatasetSpec:
    """A published dataset you supply: found at --root or $ASVA_<NAME>_ROOT, held to its published split."""
    return DatasetSpec(name=name, description=description, reader=reader, layout=layout,
                       expected_counts={"train": train, "test": test}, expected_classes=classes,
                       class_texts=class_texts, env_var=f"ASVA_{name.upper()}_ROOT", **fields)


AVSYNC15 = _published(
    "avsync15", "AVSync15: 15 classes, 1350 train / 150 test videos (ECCV 2024)", read_split_files,
    "  <root>/train.txt, <root>/test.txt   one '<class_folder>/<file>.mp4' per line\n"
    "  <root>/videos/<class_folder>/<file>.mp4",
    train=1350, test=150, classes=15, class_texts=AVSYNC15_CLASSES)

LANDSCAPES = _published(
    "landscapes", "Landscapes: 9 ambient classes, 900 train / 100 test videos", read_split_folders,
    "  <root>/videos/{train,test}/<class>/<file>.mp4",
    train=900, test=100, classes=9, class_texts=LANDSCAPES_CLASSES)

THEGREATESTHITS = _published(
    "thegreatesthits", "TheGreatestHits: one class ('hitting with a stick'), 733 train / 244 test, 128x256",
    read_split_files,
    "  <root>/train.txt, <root>/test.txt   one '<file>.mp4' per line\n"
    "  <root>/videos/<file>.mp4",
    train=733, test=244, classes=1,
    class_texts={"thegreatesthits": "hitting with a stick", "": "hitting with a stick"},
    protocol=PAPER_GREATEST_HITS)
