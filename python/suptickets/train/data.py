"""Datasets of ``suptickets train``: scikit-learn's digits (no download), Fashion-MNIST from
its four IDX files (Debian's ``dataset-fashion-mnist`` package installs them), CIFAR-10/100
from the standard python-pickle folders (no torchvision), ImageNet from an ImageFolder tree
(torchvision).

A dataset yields the training set in global batches of ``batch_size`` (the last partial
batch dropped), shuffled by a permutation drawn from ``(seed, epoch)`` alone, so an epoch's
batches (and their augmentation) are the same whether the run was resumed or not. With
several processes, process ``rank`` of ``world`` takes its contiguous part of every global
batch, so the processes together see exactly the batches of a single process.
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
from dataclasses import dataclass, replace

import numpy as np
import torch

from . import restricted_pickle
from .idx import IdxError, read_idx

DATASETS = ("digits", "fashion-mnist", "cifar10", "cifar100", "imagenet")
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                       "t10k-labels-idx1-ubyte.gz")
_FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)  # where Debian's package puts the files

# Per-channel mean and std of the training images (the values used by the CIFAR literature).
_CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
_IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class DataError(ValueError):
    """A dataset that cannot be read (missing folder or file, wrong format, missing package);
    ``option`` is the field name of the option at fault, where there is one."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


def local_part(n: int, rank: int, world: int) -> slice:
    """This process's contiguous part of a global batch of ``n`` samples."""
    return slice(n * rank // world, n * (rank + 1) // world)


@dataclass
class TensorDataset:
    """A dataset held in memory: ``x_train [N, C, H, W]`` (float, or uint8 for CIFAR, which
    ``transform`` augments and normalises batch by batch)."""
    name: str
    num_classes: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    augment: bool = False
    mean: tuple | None = None
    std: tuple | None = None
    padding: int = 4                   # of the random crops, when ``augment``
    x_val: torch.Tensor | None = None  # a validation split held out of the training set
    y_val: torch.Tensor | None = None

    @property
    def in_channels(self) -> int:
        return self.x_train.shape[1]

    @property
    def image_size(self) -> int:
        return self.x_train.shape[-1]

    @property
    def train_size(self) -> int:
        return self.y_train.numel()

    @property
    def test_size(self) -> int:
        return self.y_test.numel()

    def steps_per_epoch(self, batch_size: int) -> int:
        return self.train_size // batch_size

    def train_batches(self, epoch: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        g = epoch_generator(seed, epoch)
        order = torch.randperm(self.train_size, generator=g)
        for i in range(self.steps_per_epoch(batch_size)):
            idx = order[i * batch_size:(i + 1) * batch_size]
            x = self.x_train[idx]
            if self.augment:
                x = random_crop_flip(x, g, self.padding)
            part = local_part(len(idx), rank, world)
            yield self._normalise(x[part]), self.y_train[idx[part]]

    def test_batches(self, batch_size: int):
        for i in range(0, self.test_size, batch_size):
            yield self._normalise(self.x_test[i:i + batch_size]), self.y_test[i:i + batch_size]

    @property
    def val_size(self) -> int:
        return 0 if self.y_val is None else self.y_val.numel()

    def val_batches(self, batch_size: int):
        for i in range(0, self.val_size, batch_size):
            yield self._normalise(self.x_val[i:i + batch_size]), self.y_val[i:i + batch_size]

    def hold_out(self, n: int, seed: int = 0) -> "TensorDataset":
        """This dataset with ``n`` training samples moved to a validation split: a stratified
        draw (each class in its share of the training set) fixed by ``seed`` alone, so every
        run with the same ``n`` trains and validates on the same images."""
        if n == 0:
            return self
        if not 0 < n < self.train_size:
            raise DataError(f"--val-size must be in [0, {self.train_size}) (the training set of {self.name}); got {n}",
                            "val_size")
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(self.train_size, generator=g)
        labels = self.y_train[order]
        picked = []
        for k in range(self.num_classes):  # the first of each class in the drawn order, in proportion
            members = order[labels == k]
            picked.append(members[:round(n * members.numel() / self.train_size)])
        val = torch.cat(picked)
        if val.numel() != n:  # rounding: fill or trim in the drawn order
            rest = order[~torch.isin(order, val)]
            val = torch.cat([val, rest[:max(0, n - val.numel())]])[:n]
        val = val.sort().values
        keep = torch.ones(self.train_size, dtype=torch.bool)
        keep[val] = False
        return replace(self, x_train=self.x_train[keep], y_train=self.y_train[keep], x_val=self.x_train[val],
                       y_val=self.y_train[val])

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is None:
            return x
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (x.float() / 255.0 - mean) / std


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random ``H x W`` crops of the images zero-padded by ``padding`` and random horizontal
    flips (probability 1/2), drawn from ``generator``: the standard CIFAR augmentation
    (``padding`` 4; 0, flips alone, for Fashion-MNIST)."""
    B, _, H, W = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    oy = torch.randint(0, 2 * padding + 1, (B,), generator=generator)
    ox = torch.randint(0, 2 * padding + 1, (B,), generator=generator)
    flip = torch.rand(B, generator=generator) < 0.5
    rows = (oy[:, None] + torch.arange(H))[:, :, None]                    # [B, H, 1]
    cols = ox[:, None] + torch.arange(W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, :]     # [B, 1, W]
    batch = torch.arange(B)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def load_digits(split_seed: int = 0) -> TensorDataset:
    """scikit-learn's 1,797 8x8 digits, a stratified 75/25 split, standardised with the
    training images' mean and std."""
    try:
        from sklearn.datasets import load_digits as sk_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise DataError("the digits dataset needs scikit-learn: pip install scikit-learn") from None
    data = sk_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    train, test = train_test_split(np.arange(len(y)), test_size=0.25, random_state=split_seed, stratify=data.target)
    train, test = torch.as_tensor(train), torch.as_tensor(test)
    mean, std = x[train].mean(), x[train].std()
    x = (x - mean) / std
    return TensorDataset("digits", 10, x[train], y[train], x[test], y[test])


def fashion_mnist_dir() -> str | None:
    """The folder of the installed ``dataset-fashion-mnist`` package: the one ``dpkg -L`` lists
    with the training images in it, else the folder the package is known to use, else None."""
    folders = list(_FASHION_MNIST_DIRS)
    if shutil.which("dpkg-query"):
        try:
            listed = subprocess.run(["dpkg-query", "-L", FASHION_MNIST_PACKAGE], capture_output=True, text=True,
                                    timeout=30, check=False).stdout.splitlines()
        except (OSError, subprocess.SubprocessError):
            listed = []
        folders = [os.path.dirname(p) for p in listed if os.path.basename(p) == FASHION_MNIST_FILES[0]] + folders
    for folder in folders:
        if all(os.path.isfile(os.path.join(folder, f)) for f in FASHION_MNIST_FILES):
            return folder
    return None


def _pixel_mean_std(images: np.ndarray) -> tuple[float, float]:
    """Mean and (sample) standard deviation of uint8 pixels scaled to [0, 1], from their
    histogram: exact, and no float copy of the images."""
    counts = np.bincount(images.reshape(-1), minlength=256).astype(np.float64)
    values = np.arange(256, dtype=np.float64) / 255.0
    n = counts.sum()
    mean = float((counts * values).sum() / n)
    var = float((counts * (values - mean) ** 2).sum() / max(n - 1, 1))
    return mean, math.sqrt(var)


def load_fashion_mnist(data_dir: str | None) -> TensorDataset:
    """Fashion-MNIST (Xiao et al., 2017): 60,000 training and 10,000 test 28x28 grey images of 10
    classes, from the four IDX files in ``data_dir`` (default: :func:`fashion_mnist_dir`), read as
    uint8 and normalised by the training images' mean and std; training batches get random
    horizontal flips (no crops: shifted crops cost the 784-1000-1000-1000 MLP 2 points of test
    accuracy in 10 epochs, 87.3 against 89-90 %)."""
    folder = data_dir or fashion_mnist_dir()
    if folder is None:
        raise DataError(f"fashion-mnist: the dataset is not installed: `apt-get install {FASHION_MNIST_PACKAGE}` "
                        "(Debian/Ubuntu), or --data-dir a folder with its four IDX files")
    missing = [f for f in FASHION_MNIST_FILES if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        raise DataError(f"fashion-mnist: --data-dir {folder} lacks {', '.join(missing)} (the four IDX files of "
                        f"the dataset; `apt-get install {FASHION_MNIST_PACKAGE}` installs them)")
    try:
        arrays = [read_idx(os.path.join(folder, f), ndim, item)
                  for f, ndim, item in zip(FASHION_MNIST_FILES, (3, 1, 3, 1), ((28, 28), (), (28, 28), ()))]
    except IdxError as exc:
        raise DataError(f"fashion-mnist: {exc}") from None
    for (images, labels), split in ((arrays[0:2], 0), (arrays[2:4], 2)):
        if len(images) != len(labels):
            raise DataError(f"fashion-mnist: {os.path.join(folder, FASHION_MNIST_FILES[split])} holds {len(images)} "
                            f"images, {FASHION_MNIST_FILES[split + 1]} {len(labels)} labels")
        if labels.size and int(labels.max()) >= 10:
            raise DataError(f"fashion-mnist: {os.path.join(folder, FASHION_MNIST_FILES[split + 1])}: labels must lie "
                            f"in [0, 10), got up to {int(labels.max())}")
    x_train, y_train, x_test, y_test = (torch.from_numpy(a) for a in arrays)
    if len(y_train) < 2 or len(y_test) < 1:
        raise DataError(f"fashion-mnist: {folder} holds {len(y_train)} training and {len(y_test)} test images")
    mean, std = _pixel_mean_std(arrays[0])
    return TensorDataset("fashion-mnist", 10, x_train.unsqueeze(1), y_train.long(), x_test.unsqueeze(1),
                         y_test.long(), augment=True, mean=(mean,), std=(std,), padding=0)


def _unpickle(path: str) -> dict:
    """A CIFAR batch file, unpickled without running code (``restricted_pickle``)."""
    if not os.path.isfile(path):
        raise DataError(f"missing CIFAR file {path}")
    try:
        batch = restricted_pickle.load(path)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read CIFAR file {path}: {first[:200]}") from None
    if not isinstance(batch, dict):
        raise DataError(f"cannot read CIFAR file {path}: it holds a {type(batch).__name__}, not a CIFAR batch (dict)")
    return batch


def _cifar_arrays(batch: dict, label_key: bytes, path: str):
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except KeyError as exc:
        raise DataError(f"CIFAR file {path} has no {exc.args[0]!r} entry") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise DataError(f"CIFAR file {path}: data or labels are not arrays of numbers ({exc})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.ndim != 1 or len(labels) != len(data):
        raise DataError(f"CIFAR file {path}: expected data [N, 3072] and N labels, got {data.shape} and "
                        f"{tuple(labels.shape)}")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)


def load_cifar(name: str, data_dir: str) -> TensorDataset:
    """CIFAR-10 (``data_dir/cifar-10-batches-py/data_batch_1..5, test_batch``) or CIFAR-100
    (``data_dir/cifar-100-python/train, test``), the python-pickle release of the dataset's
    site, read as uint8 and normalised per channel; training batches get random crops
    (padding 4) and flips."""
    if name == "cifar10":
        folder = os.path.join(data_dir, "cifar-10-batches-py")
        train_files, test_files, key, classes = [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels", 10
    elif name == "cifar100":
        folder = os.path.join(data_dir, "cifar-100-python")
        train_files, test_files, key, classes = ["train"], ["test"], b"fine_labels", 100
    else:
        raise ValueError(f"not a CIFAR dataset: {name!r}")
    if not os.path.isdir(folder):
        raise DataError(f"{name}: no folder {folder} (--data-dir must hold the python-pickle release, "
                        f"{os.path.basename(folder)}/)")

    def read(files):
        parts = [_cifar_arrays(_unpickle(os.path.join(folder, f)), key, os.path.join(folder, f)) for f in files]
        for f, (_, labels) in zip(files, parts):
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= classes):
                raise DataError(f"CIFAR file {os.path.join(folder, f)}: labels must lie in [0, {classes}), got "
                                f"{int(labels.min())}..{int(labels.max())}")
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    x_train, y_train = read(train_files)
    x_test, y_test = read(test_files)
    mean, std = _CIFAR_STATS[name]
    return TensorDataset(name, classes, x_train, y_train, x_test, y_test, augment=True, mean=mean, std=std)


class ImageFolderDataset:
    """ImageNet from ``data_dir/train`` and ``data_dir/val`` class folders (torchvision's
    ``ImageFolder``): random-resized 224 crops and flips for training, resize 256 + centre
    crop 224 for testing, decoded by ``workers`` loader processes."""

    def __init__(self, data_dir: str, workers: int = 4):
        try:
            import torchvision  # noqa: F401
            from torchvision import datasets, transforms
        except ImportError:
            raise DataError("the imagenet dataset needs torchvision: pip install torchvision") from None
        for split in ("train", "val"):
            if not os.path.isdir(os.path.join(data_dir, split)):
                raise DataError(f"imagenet: no folder {os.path.join(data_dir, split)} (--data-dir must hold train/ "
                                "and val/ class folders)")
        norm = transforms.Normalize(*_IMAGENET_STATS)
        self.train = datasets.ImageFolder(os.path.join(data_dir, "train"), transforms.Compose([
            transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), transforms.ToTensor(), norm]))
        self.test = datasets.ImageFolder(os.path.join(data_dir, "val"), transforms.Compose([
            transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), norm]))
        self.name, self.num_classes, self.in_channels, self.image_size = "imagenet", len(self.train.classes), 3, 224
        self.workers = workers

    @property
    def train_size(self) -> int:
        return len(self.train)

    @property
    def test_size(self) -> int:
        return len(self.test)

    def steps_per_epoch(self, batch_size: int) -> int:
        return self.train_size // batch_size

    def train_batches(self, epoch: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        order = torch.randperm(self.train_size, generator=epoch_generator(seed, epoch))
        batches = [order[i * batch_size:(i + 1) * batch_size][local_part(batch_size, rank, world)].tolist()
                   for i in range(self.steps_per_epoch(batch_size))]
        loader = torch.utils.data.DataLoader(self.train, batch_sampler=batches, num_workers=self.workers,
                                             pin_memory=torch.cuda.is_available())
        yield from loader

    def test_batches(self, batch_size: int):
        yield from torch.utils.data.DataLoader(self.test, batch_size=batch_size, num_workers=self.workers)


def load_dataset(name: str, data_dir: str | None, workers: int = 4, val_size: int = 0):
    """The dataset ``name`` (one of ``DATASETS``), with ``val_size`` training samples held out
    as a validation split (not for ImageNet, whose own validation set is its test set here);
    ``data_dir`` is needed for all but digits and an installed Fashion-MNIST. Running out of
    memory while loading is a :class:`DataError` too (the IDX reader names the file and the bytes
    its header asked for)."""
    try:
        return _load_dataset(name, data_dir, workers, val_size)
    except MemoryError:
        where = f" from {data_dir}" if data_dir else ""
        raise DataError(f"{name}: not enough memory to load the dataset{where}") from None


def _load_dataset(name: str, data_dir: str | None, workers: int, val_size: int):
    if name == "imagenet" and val_size:
        raise DataError("--val-size: imagenet holds no validation split out of its training folders; use 0")
    if name == "digits":
        return load_digits().hold_out(val_size)
    if name == "fashion-mnist":
        return load_fashion_mnist(data_dir).hold_out(val_size)
    if name not in DATASETS:
        raise DataError(f"dataset must be one of {', '.join(DATASETS)}; got {name!r}")
    if not data_dir:
        raise DataError(f"dataset {name} needs --data-dir")
    if not os.path.isdir(data_dir):
        raise DataError(f"--data-dir {data_dir} is not a folder")
    if name == "imagenet":
        return ImageFolderDataset(data_dir, workers)
    return load_cifar(name, data_dir).hold_out(val_size)
