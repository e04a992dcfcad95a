"""Detection data: the embedded synthetic scenes, and PASCAL VOC-format folders.

``synthetic``: each scene is composed from a seed alone. A background is a random crop of a texture
shipped with scikit-image (gravel, brick, grass), tinted; on it 1–4 objects are pasted, each a fixed
box cut from a photo shipped with scikit-image (the cat of ``chelsea``, the cup of ``coffee``, the
astronaut, the motorcycle of ``motorcycle_left``) at a random size (20–55% of the scene side),
aspect-ratio change (×0.75–1.33), horizontal flip and colour jitter (brightness, contrast,
saturation). Objects never overlap, so each box is exactly the pixels of its object. The splits
``train`` / ``val`` / ``test`` draw from disjoint seed streams.

VOC: ``JPEGImages/ID.jpg``, ``Annotations/ID.xml`` (``object/name``, ``object/bndbox``,
``object/difficult``), ``ImageSets/Main/SPLIT.txt``; VOC's 1-based pixel boxes become
``(x1 - 1, y1 - 1, x2, y2)``. XML is parsed with ``xml.etree`` after refusing DOCTYPE/ENTITY
declarations and files over 1 MB. :func:`write_voc` exports any dataset in that format.

Example:
    >>> data = synthetic("test", n=2, size=96, seed=0)
    >>> data.classes, len(data), tuple(data[0].image.shape)
    (('cat', 'cup', 'person', 'motorcycle'), 2, (3, 96, 96))
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import RepscopeError
from ..images import load_image, save_image

#: class -> (sample photo, box (x1, y1, x2, y2) of the object in that photo's pixels)
OBJECTS = {"cat": ("chelsea", (30, 0, 420, 300)), "cup": ("coffee", (75, 15, 485, 390)),
           "person": ("astronaut", (20, 10, 370, 512)), "motorcycle": ("motorcycle_left", (90, 95, 690, 450))}
TEXTURES = ("gravel", "brick", "grass")
SPLITS = ("train", "val", "test")
_SPLIT_STREAM = {"train": 0, "val": 1, "test": 2}
_MAX_XML_BYTES = 1 << 20


class DataError(RepscopeError):
    """A dataset folder or split is missing or malformed."""


@dataclass
class Scene:
    """One image with its objects: ``image (3, H, W)`` in [0, 1], ``boxes (M, 4)`` pixels, ``labels (M,)``."""

    image: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    name: str
    difficult: torch.Tensor | None = None


@dataclass
class Dataset:
    """Scenes of one split and the class names (label ``k`` is ``classes[k]``)."""

    classes: tuple[str, ...]
    scenes: list[Scene]
    name: str = ""

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int) -> Scene:
        return self.scenes[i]


@lru_cache(maxsize=None)
def _object_patch(cls: str) -> torch.Tensor:
    photo, (x1, y1, x2, y2) = OBJECTS[cls]
    return load_image(f"sample:{photo}")[:, y1:y2, x1:x2].contiguous()


@lru_cache(maxsize=None)
def _texture(name: str) -> torch.Tensor:
    return load_image(f"sample:{name}")


def _jitter(patch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    gray = patch.mean(0, keepdim=True)
    sat, con, bri = rng.uniform(0.6, 1.4), rng.uniform(0.7, 1.3), rng.uniform(-0.12, 0.12)
    out = gray + sat * (patch - gray)
    out = (out - out.mean()) * con + out.mean() + bri
    return out.clamp(0, 1)


def _background(size: int, rng: np.random.Generator) -> torch.Tensor:
    tex = _texture(TEXTURES[rng.integers(len(TEXTURES))])
    side = int(rng.integers(size, min(tex.shape[1], tex.shape[2]) + 1))
    y, x = int(rng.integers(0, tex.shape[1] - side + 1)), int(rng.integers(0, tex.shape[2] - side + 1))
    crop = F.interpolate(tex[None, :, y:y + side, x:x + side], size=(size, size), mode="bilinear",
                         align_corners=False, antialias=True)[0]
    tint = torch.as_tensor(rng.uniform(0.55, 1.0, size=3), dtype=torch.float32)[:, None, None]
    return (crop * tint).clamp(0, 1)


def make_scene(seed: int, size: int = 224, max_objects: int = 4) -> Scene:
    """One synthetic scene ``size x size`` from ``seed`` (same seed, same pixels, boxes and labels)."""
    rng = np.random.default_rng(seed)
    image = _background(size, rng)
    classes = tuple(OBJECTS)
    boxes, labels = [], []
    wanted = int(rng.integers(1, max_objects + 1))
    for _ in range(60):
        if len(boxes) == wanted:
            break
        cls = int(rng.integers(len(classes)))
        patch = _object_patch(classes[cls])
        scale = rng.uniform(0.2, 0.55) * size / max(patch.shape[1:])
        aspect = np.exp(rng.uniform(np.log(0.75), np.log(1.33)))
        h = int(round(min(size, patch.shape[1] * scale / np.sqrt(aspect))))
        w = int(round(min(size, patch.shape[2] * scale * np.sqrt(aspect))))
        x, y = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        flip, jitter_seed = bool(rng.integers(2)), int(rng.integers(2**31))
        if any(x < b[2] and b[0] < x + w and y < b[3] and b[1] < y + h for b in boxes):
            continue  # never overlap: each box is exactly its object's pixels
        obj = F.interpolate(patch[None], size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0]
        obj = _jitter(obj.flip(-1) if flip else obj, np.random.default_rng(jitter_seed))
        image[:, y:y + h, x:x + w] = obj
        boxes.append((x, y, x + w, y + h))
        labels.append(cls)
    return Scene(image=image, boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                 labels=torch.tensor(labels, dtype=torch.int64), name=f"synthetic-{seed}")


def synthetic(split: str = "train", n: int | None = None, size: int = 224, seed: int = 0) -> Dataset:
    """The synthetic ``split`` (default sizes: train 160, val 40, test 80 scenes) of ``size``-pixel scenes."""
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'. Use one of {', '.join(SPLITS)}.")
    n = {"train": 160, "val": 40, "test": 80}[split] if n is None else n
    base = (seed * 3 + _SPLIT_STREAM[split]) * 1_000_003
    return Dataset(classes=tuple(OBJECTS), scenes=[make_scene(base + i, size) for i in range(n)],
                   name=f"synthetic/{split}")


def _read_xml(path: Path) -> ET.Element:
    data = path.read_bytes()
    if len(data) > _MAX_XML_BYTES:
        raise DataError(f"annotation '{path}' is larger than 1 MB. Check that it is a VOC annotation.")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise DataError(f"annotation '{path}' declares a DOCTYPE/ENTITY, which is refused. Remove the declaration.")
    try:
        return ET.fromstring(data)
    except ET.ParseError as err:
        raise DataError(f"annotation '{path}' is not valid XML ({err}). Fix or remove the file.") from None


def _parse_annotation(path: Path, classes: list[str]) -> tuple[list, list, list]:
    root = _read_xml(path)
    boxes, labels, difficult = [], [], []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        if not name or bb is None:
            raise DataError(f"annotation '{path}' has an object without name or bndbox. Fix the file.")
        try:
            x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            raise DataError(f"annotation '{path}' has a non-numeric bndbox. Fix the file.") from None
        if name not in classes:
            classes.append(name)
        boxes.append((x1 - 1, y1 - 1, x2, y2))
        labels.append(classes.index(name))
        difficult.append(int((obj.findtext("difficult") or "0").strip() or 0))
    return boxes, labels, difficult


def load_voc(root: str | os.PathLike, split: str = "test", classes: tuple[str, ...] | None = None,
             limit: int | None = None) -> Dataset:
    """The VOC-format folder ``root``'s ``split`` (ids from ``ImageSets/Main/SPLIT.txt``)."""
    root = Path(root)
    ids_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not ids_file.is_file():
        raise DataError(f"'{ids_file}' not found. A VOC folder needs JPEGImages/, Annotations/ and "
                        f"ImageSets/Main/{split}.txt.")
    ids = [line.split()[0] for line in ids_file.read_text().splitlines() if line.strip()][:limit]
    names = list(classes or ())
    scenes = []
    for image_id in ids:
        xml = root / "Annotations" / f"{image_id}.xml"
        if not xml.is_file():
            raise DataError(f"annotation '{xml}' is missing for image '{image_id}' of {ids_file.name}. "
                            "Add it or remove the id from the split file.")
        jpgs = [p for p in (root / "JPEGImages" / f"{image_id}{s}" for s in (".jpg", ".jpeg", ".png")) if p.is_file()]
        if not jpgs:
            raise DataError(f"image '{image_id}' is missing from '{root / 'JPEGImages'}'. Add it or fix {ids_file.name}.")
        boxes, labels, difficult = _parse_annotation(xml, names)
        scenes.append(Scene(image=load_image(jpgs[0]), boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                            labels=torch.tensor(labels, dtype=torch.int64), name=image_id,
                            difficult=torch.tensor(difficult, dtype=torch.bool)))
    if classes is not None and len(names) > len(classes):
        extra = sorted(set(names) - set(classes))
        raise DataError(f"'{root}' has classes {extra} that the head does not know. Train on this data first.")
    return Dataset(classes=tuple(names), scenes=scenes, name=f"{root}/{split}")


def write_voc(dataset: Dataset, root: str | os.PathLike, split: str) -> Path:
    """Write ``dataset`` as a VOC-format folder: ``JPEGImages/ID.png`` (lossless), ``Annotations/ID.xml``, the split list."""
    from .. import io
    root = Path(root)
    ids = []
    for scene in dataset.scenes:
        ids.append(scene.name)
        save_image(scene.image, root / "JPEGImages" / f"{scene.name}.png")
        ann = ET.Element("annotation")
        ET.SubElement(ann, "filename").text = f"{scene.name}.png"
        for box, label in zip(scene.boxes.tolist(), scene.labels.tolist()):
            obj = ET.SubElement(ann, "object")
            ET.SubElement(obj, "name").text = dataset.classes[label]
            ET.SubElement(obj, "difficult").text = "0"
            bb = ET.SubElement(obj, "bndbox")
            for key, v in zip(("xmin", "ymin", "xmax", "ymax"), (box[0] + 1, box[1] + 1, box[2], box[3])):
                ET.SubElement(bb, key).text = f"{v:g}"
        io.write_bytes(root / "Annotations" / f"{scene.name}.xml", ET.tostring(ann))
    io.write_text(root / "ImageSets" / "Main" / f"{split}.txt", "\n".join(ids) + "\n")
    return root


def load_data(spec: str, split: str, *, n: int | None = None, size: int = 224, seed: int = 0,
              classes: tuple[str, ...] | None = None) -> Dataset:
    """``synthetic`` (the embedded scenes) or a VOC-format folder, by ``--data`` spec."""
    if spec == "synthetic":
        return synthetic(split, n=n, size=size, seed=seed)
    if not Path(spec).is_dir():
        raise DataError(f"--data '{spec}' is neither 'synthetic' nor a folder. Give a VOC-format folder.")
    return load_voc(spec, split, classes=classes, limit=n)
