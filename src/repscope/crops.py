"""Fit and held-out image streams: seeded random crops and rescales of photos, split by source photo.

Engines that learn a map between representations (equivariance's M_g, stitching layers) fit it on
one set of photos and measure it on others: :func:`crop_data` expands files, folders or the shipped
sample photos into many seeded crops, and no source photo feeds both streams (no leakage).
Streams decode one source at a time, so memory does not grow with the number of crops.
:func:`validation_sources` names the fit stream's photos held out to choose λ or to stop training early.

Example:
    >>> fit, test = crop_data(n_fit=8, n_test=4, size=64)
    >>> sum(len(batch) for batch, _ in fit)
    8
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import ImageError, unknown


class Crops:
    """A re-iterable, seeded stream of random square crops/rescales of source images.

    Args:
        sources: image specs (files, ``sample:NAME``) or tensors ``(3, H, W)`` in [0, 1].
        n: number of crops. size: side of each crop in pixels. seed: crop positions and sizes.
        batch_size: crops per yielded batch. scale: range of the crop side as a fraction of the
            source's shorter side.
        labels: optional class index of each source (``labels[source index]``), e.g. from a labelled folder.

    Yields:
        ``(images (B, 3, size, size) in [0, 1], source index (B,))``; only one source is decoded at a time.
    """

    def __init__(self, sources: Sequence, n: int, size: int = 128, *, seed: int = 0, batch_size: int = 16,
                 scale: tuple[float, float] = (0.3, 1.0), labels: Sequence[int] | None = None):
        if not sources:
            raise ImageError("no source images for crops. Name image files, a folder, or sample:NAME.")
        self.sources, self.n, self.size, self.seed = list(sources), int(n), int(size), int(seed)
        self.batch_size, self.scale = int(batch_size), scale
        self.labels = list(labels) if labels is not None else None

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        gen = torch.Generator().manual_seed(self.seed)
        batch, owners = [], []
        for src_index in range(len(self.sources)):
            count = self.n // len(self.sources) + (src_index < self.n % len(self.sources))
            if count == 0:
                continue
            image = self._load(self.sources[src_index])
            h, w = image.shape[-2:]
            for _ in range(count):
                u = float(torch.empty(()).uniform_(*self.scale, generator=gen))
                side = max(8, int(round(min(h, w) * u)))
                top = int(torch.randint(0, h - side + 1, (), generator=gen))
                left = int(torch.randint(0, w - side + 1, (), generator=gen))
                patch = image[None, :, top:top + side, left:left + side]
                batch.append(F.interpolate(patch, size=(self.size, self.size), mode="bilinear",
                                           antialias=side > self.size, align_corners=False).clamp(0, 1)[0])
                owners.append(src_index)
                if len(batch) == self.batch_size:
                    yield torch.stack(batch), torch.tensor(owners)
                    batch, owners = [], []
        if batch:
            yield torch.stack(batch), torch.tensor(owners)

    @staticmethod
    def _load(source) -> Tensor:
        if isinstance(source, Tensor):
            return source.float()
        from .images import load_image

        return load_image(source)


def labelled_folder(folder: str | Path) -> tuple[list[str], list[int]] | None:
    """Files and class indices of a folder whose subfolders are ImageNet classes, else ``None``.

    A subfolder is named by a class index (``285``) or an ImageNet class name (``Egyptian cat``,
    case-insensitive, ``_`` for spaces). Unknown names raise :class:`ImageError` with the closest names.
    """
    from .images import list_image_files
    from .models import imagenet_class_names

    folder = Path(folder)
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if not subfolders:
        return None
    names = imagenet_class_names()
    by_name = {n.lower(): i for i, n in enumerate(names)}
    files, labels = [], []
    for sub in subfolders:
        key = sub.name.replace("_", " ").lower()
        label = int(key) if key.isdigit() and int(key) < len(names) else by_name.get(key)
        if label is None:
            raise ImageError(unknown("ImageNet class folder", sub.name, names,
                                     "Name each subfolder by a class index or an ImageNet class name."))
        found = list_image_files(sub)
        files += [str(f) for f in found]
        labels += [label] * len(found)
    return files, labels


def validation_sources(fit: Crops) -> set[int]:
    """Source photos of a fit stream held out for model selection (every 4th, when there are at least 3).

    Engines that fit on ``fit`` choose λ (ridge) or stop early (task training) on the crops of these
    photos (``owners`` yielded by the stream), so the choice is made on photos the map was not fitted to.
    Returns an empty set with fewer than 3 photos (then the callers hold out every 4th batch or crop).
    """
    k = len(fit.sources)
    return {i for i in range(k) if i % 4 == 3} or ({k - 1} if k >= 3 else set())


def crop_data(images=None, *, n_fit: int = 96, n_test: int = 48, size: int = 129, seed: int = 0,
              held_out: float = 0.3, batch_size: int = 16) -> tuple[Crops, Crops]:
    """Fit and held-out crop streams, split by source photo (no photo is in both).

    Args:
        images: files, folders or ``sample:NAME`` (default: the shipped natural sample photos). One
            folder of class subfolders (:func:`labelled_folder`) gives labelled streams (``.labels``).
        n_fit, n_test: crops in each stream. seed: split and crops.
        size: crop side in pixels. Sizes ``64·j + 1`` (65, 129, 193, 257) keep every stride-2 stage of a
            "same"-padded network (EfficientNet-Lite) centred on the image, so flips and 90° rotations
            are exact cell permutations of each feature map.
        held_out: fraction of the source photos kept for the held-out stream (at least one).
    """
    from .images import NATURAL_SAMPLES, expand_specs

    labelled = None
    if isinstance(images, (str, Path)) or (isinstance(images, (list, tuple)) and len(images) == 1):
        labelled = labelled_folder(images if isinstance(images, (str, Path)) else images[0])
    if labelled is not None:
        specs, labels = labelled
    else:
        specs = expand_specs(images) if images is not None else [f"sample:{n}" for n in NATURAL_SAMPLES]
        labels = None
    if len(specs) < 2:
        raise ImageError(f"equivariance needs at least 2 source images to split fit/held-out, got {len(specs)}. "
                         "Give a folder with more images.")
    order = torch.randperm(len(specs), generator=torch.Generator().manual_seed(seed)).tolist()
    k = min(len(specs) - 1, max(1, round(held_out * len(specs))))
    test, fit = order[:k], order[k:]

    def stream(indices: list[int], n: int, stream_seed: int) -> Crops:
        return Crops([specs[i] for i in indices], n, size, seed=stream_seed, batch_size=batch_size,
                     labels=[labels[i] for i in indices] if labels is not None else None)

    return stream(fit, n_fit, seed + 1), stream(test, n_test, seed + 2)
