"""Datasets and models of ``suptickets train``: the CIFAR pickle loader on files written here in
that format, the crop-and-flip augmentation, batching over processes, the architectures."""
import json
import os
import pickle
import sys

import numpy as np
import pytest
import torch

from suptickets.train import cli
from suptickets.train.data import DataError, load_cifar, load_dataset, local_part, random_crop_flip
from suptickets.train.models import build_model


def write_cifar(root, name="cifar10", per_file=24, seed=0):
    """A small dataset in the layout and pickle format of the CIFAR python release."""
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        folder, files, key, classes = root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + [
            "test_batch"], "labels", 10
    else:
        folder, files, key, classes = root / "cifar-100-python", ["train", "test"], "fine_labels", 100
    folder.mkdir(parents=True)
    written = {}
    for f in files:
        data = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
        labels = rng.integers(0, classes, per_file).tolist()
        with open(folder / f, "wb") as fh:
            pickle.dump({b"data": data, key.encode(): labels, b"batch_label": f.encode()}, fh)
        written[f] = (data, labels)
    return written


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_loader_reads_the_pickle_release(tmp_path, name):
    written = write_cifar(tmp_path, name)
    ds = load_cifar(name, str(tmp_path))
    train_files = [f for f in written if f not in ("test_batch", "test")]
    assert ds.num_classes == (10 if name == "cifar10" else 100)
    assert ds.train_size == 24 * len(train_files) and ds.test_size == 24
    assert ds.x_train.dtype == torch.uint8 and ds.x_train.shape[1:] == (3, 32, 32)
    first, labels = written[train_files[0]]
    assert torch.equal(ds.x_train[0], torch.from_numpy(first[0].reshape(3, 32, 32)))  # channel-major rows of 1024
    assert ds.y_train[:24].tolist() == labels
    # test batches are normalised per channel with the dataset's mean and std
    x, y = next(ds.test_batches(8))
    test_data, test_labels = written["test_batch" if name == "cifar10" else "test"]
    raw = torch.from_numpy(test_data[:8].reshape(8, 3, 32, 32)).float() / 255
    mean, std = torch.tensor(ds.mean).view(1, 3, 1, 1), torch.tensor(ds.std).view(1, 3, 1, 1)
    torch.testing.assert_close(x, (raw - mean) / std)
    assert y.tolist() == test_labels[:8]


def test_cifar_loader_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_cifar("cifar10", str(tmp_path))
    write_cifar(tmp_path)
    os.remove(tmp_path / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar("cifar10", str(tmp_path))
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="cannot read CIFAR file .*data_batch_3"):
        load_cifar("cifar10", str(tmp_path))
    with pytest.raises(DataError, match="needs --data-dir"):
        load_dataset("cifar100", None)


def test_imagenet_without_torchvision_is_a_clear_error(tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_torchvision(name, *args, **kwargs):
        if name.startswith("torchvision"):
            raise ImportError("no torchvision")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchvision)
    with pytest.raises(DataError, match="needs torchvision"):
        load_dataset("imagenet", str(tmp_path))


def _fake_torchvision(monkeypatch):
    """A stand-in for torchvision (not installable beside this torch): ``ImageFolder`` lists the
    class folders and "decodes" each file into an image whose pixels encode its index."""
    import types

    class ImageFolder(torch.utils.data.Dataset):
        def __init__(self, root, transform=None):
            self.classes = sorted(os.listdir(root))
            self.samples = [(os.path.join(root, c, f), i) for i, c in enumerate(self.classes)
                            for f in sorted(os.listdir(os.path.join(root, c)))]
            self.transform = transform

        def __len__(self):
            return len(self.samples)

        def __getitem__(self, i):
            image = torch.full((3, 224, 224), float(i))
            return (self.transform(image) if self.transform else image), self.samples[i][1]

    def step(*args, **kwargs):
        return lambda x: x

    transforms = types.SimpleNamespace(Compose=lambda fs: (lambda x: x), RandomResizedCrop=step,
                                       RandomHorizontalFlip=step, ToTensor=step, Normalize=step, Resize=step,
                                       CenterCrop=step)
    module = types.ModuleType("torchvision")
    module.datasets, module.transforms = types.SimpleNamespace(ImageFolder=ImageFolder), transforms
    monkeypatch.setitem(sys.modules, "torchvision", module)


def _image_tree(root, per_class=6):
    for split in ("train", "val"):
        for c in ("n01", "n02", "n03"):
            (root / split / c).mkdir(parents=True)
            for i in range(per_class if split == "train" else 2):
                (root / split / c / f"{i}.JPEG").write_bytes(b"")


def test_imagenet_batches_split_over_processes(tmp_path, monkeypatch):
    _fake_torchvision(monkeypatch)
    _image_tree(tmp_path)
    ds = load_dataset("imagenet", str(tmp_path), workers=0)
    assert (ds.num_classes, ds.train_size, ds.test_size, ds.image_size) == (3, 18, 6, 224)
    whole = list(ds.train_batches(epoch=1, batch_size=8, seed=0))
    assert len(whole) == 2 and all(x.shape == (8, 3, 224, 224) for x, _ in whole)
    index = torch.cat([x[:, 0, 0, 0] for x, _ in whole]).long()
    assert len(set(index.tolist())) == 16  # a permutation's first 16 samples
    parts = [list(ds.train_batches(epoch=1, batch_size=8, seed=0, rank=r, world=2)) for r in range(2)]
    for i, (x, y) in enumerate(whole):
        torch.testing.assert_close(torch.cat([p[i][0] for p in parts]), x)
        assert torch.equal(torch.cat([p[i][1] for p in parts]), y)
    assert sum(len(y) for _, y in ds.test_batches(4)) == 6


@pytest.mark.slow
def test_cli_trains_on_an_image_folder(tmp_path, monkeypatch):
    _fake_torchvision(monkeypatch)
    _image_tree(tmp_path / "imagenet")
    out = tmp_path / "run"
    code = cli.main(["train", "--dataset", "imagenet", "--data-dir", str(tmp_path / "imagenet"), "--model", "cnn",
                     "--epochs", "2", "--batch-size", "6", "--workers", "0", "--lr-milestones", "1",
                     "--block-size", "16", "--no-sup-tickets", "--update-every", "1", "--quiet", "--threads", "1",
                     "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 * 3 and 0 <= summary["test_accuracy"] <= 1


def test_random_crop_flip_is_a_shifted_window_of_the_padded_image():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6) + 1
    g = torch.Generator().manual_seed(3)
    out = random_crop_flip(x, g, padding=2)
    g = torch.Generator().manual_seed(3)
    oy, ox = torch.randint(0, 5, (2,), generator=g), torch.randint(0, 5, (2,), generator=g)
    flip = torch.rand(2, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (2,) * 4)
    for b in range(2):
        window = padded[b, :, oy[b]:oy[b] + 6, ox[b]:ox[b] + 6]
        torch.testing.assert_close(out[b], window.flip(2) if flip[b] else window)
    # many draws: (nearly) all 25 offsets x 2 flips occur
    g = torch.Generator().manual_seed(0)
    seen = {random_crop_flip(x[:1], g, padding=2).numpy().tobytes() for _ in range(400)}
    assert len(seen) >= 45


def test_batches_split_over_processes_are_the_single_process_batches(tmp_path):
    write_cifar(tmp_path, per_file=20)
    ds = load_cifar("cifar10", str(tmp_path))
    whole = list(ds.train_batches(epoch=3, batch_size=16, seed=5))
    parts = [list(ds.train_batches(epoch=3, batch_size=16, seed=5, rank=r, world=3)) for r in range(3)]
    assert len(whole) == 100 // 16
    for i, (x, y) in enumerate(whole):
        torch.testing.assert_close(torch.cat([p[i][0] for p in parts]), x)
        assert torch.equal(torch.cat([p[i][1] for p in parts]), y)
    again = list(ds.train_batches(epoch=3, batch_size=16, seed=5))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(whole, again))  # (seed, epoch) fixes order and crops
    other = list(ds.train_batches(epoch=4, batch_size=16, seed=5))
    assert not torch.equal(whole[0][1], other[0][1])
    assert [local_part(5, r, 2) for r in range(2)] == [slice(0, 2), slice(2, 5)]


def test_cli_trains_on_cifar_files(tmp_path):
    write_cifar(tmp_path / "data", per_file=16)
    out = tmp_path / "run"
    code = cli.main(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--model", "cnn",
                     "--epochs", "2", "--batch-size", "16", "--no-sup-tickets", "--update-every", "2", "--quiet",
                     "--threads", "1", "--block-size", "16", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 * (80 // 16)
    sparse = [r for r in summary["layers"] if r["status"] == "sparse"]
    assert sparse and all(r["density"] < 1 for r in sparse)


# parameter counts of the reference implementations (torchvision's resnet50; the CIFAR
# models as in the sparse-training literature's code)
@pytest.mark.parametrize("name, size, classes, params", [
    ("resnet50", 224, 1000, 25_557_032),
    ("resnet50", 32, 10, 23_520_842),
    ("resnet18", 32, 10, 11_173_962),
    ("wrn28-10", 32, 10, 36_479_194),
    ("vgg16", 32, 10, 15_255_626),
])
def test_architectures_have_their_reference_sizes(name, size, classes, params):
    model = build_model(name, in_channels=3, image_size=size, num_classes=classes)
    assert sum(p.numel() for p in model.parameters()) == params
    if size == 32:
        model.eval()
        with torch.no_grad():
            assert model(torch.randn(2, 3, 32, 32)).shape == (2, classes)


def test_small_models_fit_digits():
    for name in ("mlp", "cnn"):
        model = build_model(name, in_channels=1, image_size=8, num_classes=10)
        assert model(torch.randn(4, 1, 8, 8)).shape == (4, 10)
    with pytest.raises(ValueError, match="model must be one of"):
        build_model("alexnet", in_channels=1, image_size=8, num_classes=10)
