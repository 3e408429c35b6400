"""genzoo.data: built-in data, user data through `datasets`, transforms, determinism and the bad-data errors."""

import argparse
import logging

import numpy as np
import PIL.Image
import pytest
import torch

from genzoo.data import (
    DataError,
    TrainingData,
    add_data_arguments,
    dataset_names,
    digit_captions,
    digits_dataset,
    load_training_data,
    registered_datasets,
    toy_dataset,
    toy_points,
)
from genzoo.data.builtin import digits_arrays, digits_split_indices

# Measured over 5 x 100,000 points; the table in docs/data.md shows the same numbers.
TOY_STATS = {  # name: (mean, std) per coordinate
    "moons": ((0.0, 0.30), (1.743, 1.008)),
    "8gaussians": ((0.0, 0.0), (2.031, 2.031)),
    "checkerboard": ((0.0, 0.0), (2.309, 2.309)),
    "swissroll": ((0.40, 0.04), (1.340, 1.406)),
    "circles": ((0.0, 0.0), (1.695, 1.695)),
    "spirals": ((0.0, 0.0), (1.611, 1.584)),
}


def load(*argv, seed=None):
    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    args = parser.parse_args([str(a) for a in argv])
    args.seed = seed
    return load_training_data(args)


def write_images(folder, sizes_and_modes, bad=0):
    """PNGs with a horizontal ramp (so crops and flips are visible) and `bad` corrupt .png files."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, ((w, h), mode) in enumerate(sizes_and_modes):
        ramp = np.tile(np.linspace(0, 255, w).astype(np.uint8), (h, 1)) // (i % 3 + 1)
        image = PIL.Image.fromarray(ramp)
        image.convert(mode).save(folder / f"img{i:03d}.png")
    for i in range(bad):
        (folder / f"bad{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return folder


# ---------------------------------------------------------------------------------------------------- digits
def test_digits_training_data():
    """--dataset digits is the train split: 1437 of the 1797 digits (the other 360 are the metrics' reference)."""
    data = load()
    assert isinstance(data, TrainingData) and data.name == "digits" and data.kind == "image"
    assert len(data.dataset) == 1437 and data.sample_shape == (1, 8, 8)
    assert data.num_classes == 10 and data.id2label == {i: str(i) for i in range(10)}
    assert data.describe() == "digits: 1437 images 1x8x8, 10 classes"
    assert len(data.hf_dataset) == 1437 and data.hf_dataset.features["label"].names[3] == "3"
    samples = torch.stack([data.dataset[i]["sample"] for i in range(len(data.dataset))])
    assert samples.dtype == torch.float32 and samples.shape == (1437, 1, 8, 8)
    assert samples.min() == -1.0 and samples.max() == 1.0
    labels = [data.dataset[i]["label"] for i in range(len(data.dataset))]
    assert sorted(set(labels)) == list(range(10))
    for i in (0, 5, 1436):
        item = data.dataset[i]
        assert set(item) == {"sample", "index", "label"} and item["index"] == i and isinstance(item["label"], int)
    with pytest.raises(IndexError):
        data.dataset[1437]


def test_digits_pixel_scaling_round_trip():
    from sklearn.datasets import load_digits

    digits = load_digits()
    data = load()
    rows = digits_split_indices("train")  # row i of the training data is sklearn's digit rows[i]
    for i in (0, 1, 100):
        expected = np.rint(digits.images[rows[i]] * 255 / 16) / 127.5 - 1
        sample = data.dataset[i]["sample"][0].numpy()
        np.testing.assert_allclose(sample, expected, atol=1e-6)
        assert data.dataset[i]["label"] == digits.target[rows[i]]
    has_max = (digits.images[rows] == 16).any(axis=(1, 2))
    k = int(np.argmax(has_max))  # the first training digit with a pixel at sklearn's maximum
    v, sample = digits.images[rows[k]], data.dataset[k]["sample"][0].numpy()
    assert (v == 16).any() and (v == 0).any()
    assert (sample[v == 16] == 1.0).all() and (sample[v == 0] == -1.0).all()
    assert digits_dataset()[0]["image"].mode == "L"


def test_digits_splits_are_disjoint_complete_stratified_and_fixed():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    target = load_digits().target
    train, test, every = (digits_split_indices(s) for s in ("train", "test", "all"))
    assert (len(train), len(test), len(every)) == (1437, 360, 1797)
    assert not set(train) & set(test) and np.array_equal(np.sort(np.r_[train, test]), np.arange(1797))
    assert np.array_equal(every, np.arange(1797)) and np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    # stratified: each class keeps its share of the data, 35-37 test digits each
    test_counts, all_counts = np.bincount(target[test], minlength=10), np.bincount(target, minlength=10)
    assert test_counts.sum() == 360 and test_counts.min() >= 35 and test_counts.max() <= 37
    np.testing.assert_allclose(test_counts / all_counts, 0.2, atol=0.01)
    # the documented rule, recomputed
    _, expected = train_test_split(np.arange(1797), test_size=360, stratify=target, random_state=0)
    assert np.array_equal(test, np.sort(expected))
    # the datasets and arrays agree with the indices
    for split, rows in (("train", train), ("test", test), ("all", every)):
        hf = digits_dataset(split)
        pixels, labels = digits_arrays(split)
        assert len(hf) == len(rows) == len(pixels) and np.array_equal(labels, target[rows])
        assert np.array_equal(np.asarray(hf[3]["image"]), pixels[3]) and hf[3]["label"] == labels[3]
    assert digits_dataset() is digits_dataset("train")
    with pytest.raises(DataError, match="digits split must be one of train, test, all"):
        digits_dataset("validation")


@pytest.mark.parametrize("resolution", [16, 32])
def test_digits_upscaled(resolution):
    data = load("--resolution", resolution, "--max_train_samples", 20)
    sample = data.dataset[3]["sample"]
    assert data.sample_shape == sample.shape == (1, resolution, resolution)
    assert -1.0 <= sample.min() < sample.max() <= 1.0
    assert len(data.dataset) == 20 and data.dataset[19]["label"] == load().dataset[19]["label"]


# ------------------------------------------------------------------------------------------------------ toys
def test_every_registered_2d_set_has_documented_statistics():
    assert set(dataset_names("vector")) == set(TOY_STATS)


@pytest.mark.parametrize("name", dataset_names("vector"))
def test_toy_points_seeded_with_documented_statistics(name):
    points = toy_points(name, 10000, np.random.default_rng(0))
    assert points.shape == (10000, 2) and points.dtype == np.float32
    np.testing.assert_array_equal(points, toy_points(name, 10000, np.random.default_rng(0)))
    assert not np.array_equal(points, toy_points(name, 10000, np.random.default_rng(1)))
    mean, std = TOY_STATS[name]
    np.testing.assert_allclose(points.mean(0), mean, atol=0.1)
    np.testing.assert_allclose(points.std(0), std, atol=0.08)
    assert toy_points(name, 7, np.random.default_rng(0)).shape == (7, 2)  # odd sizes too


def test_8gaussians_has_eight_equal_clusters():
    points = toy_points("8gaussians", 8000, np.random.default_rng(3))
    angles = np.arange(8) * np.pi / 4
    centers = 4 * np.stack([np.cos(angles), np.sin(angles)], 1) / 1.414
    nearest = np.argmin(((points[:, None] - centers[None]) ** 2).sum(-1), axis=1)
    counts = np.bincount(nearest, minlength=8)
    assert counts.min() > 850 and counts.max() < 1150, counts
    spread = np.linalg.norm(points - centers[nearest], axis=1)
    assert 0.3 < spread.mean() < 0.6  # 0.5 / 1.414 * sqrt(pi / 2) = 0.443


def test_toy_training_data_uses_seed_and_num_samples():
    data = load("--dataset", "moons", "--num_samples", 500, seed=7)
    assert data.kind == "vector" and data.sample_shape == (2,) and data.num_classes is None
    assert data.describe() == "moons: 500 vectors of dimension 2"
    item = data.dataset[4]
    assert set(item) == {"sample", "index"} and item["index"] == 4 and item["sample"].dtype == torch.float32
    expected = toy_points("moons", 500, np.random.default_rng(7))
    np.testing.assert_array_equal(torch.stack([data.dataset[i]["sample"] for i in range(500)]).numpy(), expected)
    again = load("--dataset", "moons", "--num_samples", 500, "--data_seed", 7, seed=99)
    assert torch.equal(again.dataset[4]["sample"], item["sample"])
    assert len(load("--dataset", "circles").dataset) == 10000
    hf = toy_dataset("spirals", 10, seed=2)
    assert hf.column_names == ["x"] and hf.features["x"].feature.dtype == "float32" and len(hf[0]["x"]) == 2


def test_options_that_do_not_apply_are_ignored_with_a_warning(caplog):
    """A recipe shared by toys and images may set both kinds of options: ignored, but said."""
    caplog.set_level(logging.WARNING, logger="genzoo.data")
    data = load("--dataset", "8gaussians", "--num_samples", 50, "--resolution", 8, "--random_flip")
    assert data.sample_shape == (2,) and len(data.dataset) == 50
    assert "--resolution, --random_flip: image options, ignored for the vector data '8gaussians'" in caplog.text
    assert len(load("--num_samples", 100).dataset) == 1437
    assert "--num_samples applies to the 2-D toy data sets only; ignored for 'digits'" in caplog.text


# ---------------------------------------------------------------------------------------------- image folders
def test_image_folder_channels(tmp_path):
    gray = write_images(tmp_path / "gray", [((8, 8), "L")] * 4)
    rgb = write_images(tmp_path / "rgb", [((8, 8), "RGB"), ((8, 8), "L"), ((8, 8), "RGB")])
    data = load("--dataset", gray)
    assert data.sample_shape == (1, 8, 8) and data.num_classes is None and "label" not in data.dataset[0]
    assert data.describe() == f"{gray}: 4 images 1x8x8" and data.source == "imagefolder"
    data = load("--dataset", rgb)
    assert data.sample_shape == data.dataset[1]["sample"].shape == (3, 8, 8)
    grey_as_rgb = data.dataset[1]["sample"]
    assert torch.equal(grey_as_rgb[0], grey_as_rgb[2])
    assert load("--dataset", gray, "--num_channels", 3).dataset[0]["sample"].shape == (3, 8, 8)
    assert load("--dataset", rgb, "--num_channels", 1).dataset[0]["sample"].shape == (1, 8, 8)


def gradient(bits: int, height=12, width=16) -> np.ndarray:
    """A known gradient at ``bits`` bits: 0 at the top left to full scale at the bottom right."""
    ramp = np.add.outer(np.arange(height) * width, np.arange(width)) / (height * width - 1)
    return np.round(ramp * (2**bits - 1)).astype(np.uint16 if bits == 16 else np.uint8)


def samples(data) -> torch.Tensor:
    """What the trainer gets: every item's sample, in [-1, 1], through a DataLoader."""
    return torch.cat([b["sample"] for b in torch.utils.data.DataLoader(data.dataset, batch_size=4)])


def test_sixteen_bit_pngs_train_like_their_eight_bit_version(tmp_path):
    """A 16-bit grayscale PNG (PIL mode "I;16") is gray levels scaled by 65535, not clipped to white at 255."""
    import datasets

    for folder, bits in (("png16", 16), ("png8", 8)):
        (tmp_path / folder).mkdir()
        for i in range(3):
            PIL.Image.fromarray(np.flip(gradient(bits), axis=i % 2)).save(tmp_path / folder / f"{i}.png")
    assert PIL.Image.open(tmp_path / "png16" / "0.png").mode == "I;16"
    eight, sixteen = load("--dataset", tmp_path / "png8"), load("--dataset", tmp_path / "png16")
    assert sixteen.sample_shape == eight.sample_shape == (1, 12, 12)  # gray: one channel, not RGB
    expected, got = samples(eight), samples(sixteen)
    assert got.min() == -1 and got.max() == 1 and len(got.unique()) > 100  # a gradient, not a white page
    assert (got - expected).abs().max() * 127.5 <= 1 + 1e-4  # within 1/255 of the intensity range
    # the same through `datasets`: 16-bit PIL images in a save_to_disk folder (and big-endian ones)
    images = [PIL.Image.fromarray(gradient(16)), PIL.Image.fromarray(gradient(16).astype(">u2"))]
    assert [im.mode for im in images] == ["I;16", "I;16B"]
    hf = datasets.Dataset.from_dict({"image": images}, features=datasets.Features({"image": datasets.Image()}))
    hf.save_to_disk(str(tmp_path / "saved"))
    saved = samples(load("--dataset", tmp_path / "saved", "--center_crop"))
    reference = torch.from_numpy(gradient(8)[None, :, 2:14]).float() / 127.5 - 1
    assert saved.shape == (2, 1, 12, 12)
    assert (saved - reference).abs().max() * 127.5 <= 1 + 1e-4


def test_every_image_mode_becomes_gray_levels_or_rgb():
    from genzoo.data.training_data import is_grayscale, to_l_or_rgb

    g8, g16 = gradient(8, 2, 8), gradient(16, 2, 8)
    zero, full = np.zeros_like(g8), np.full_like(g8, 255)
    rgb = np.stack([g8, zero, full - g8], -1)
    alpha = g8[..., None].astype(int)
    gray_palette = PIL.Image.fromarray(g8).convert("P")
    transparent_palette = gray_palette.copy()
    transparent_palette.info["transparency"] = int(np.asarray(gray_palette)[0, 0])  # the first pixel's entry
    cases = {  # image: (grayscale?, the 8-bit pixels it becomes)
        "L": (PIL.Image.fromarray(g8), True, g8),
        "1": (PIL.Image.fromarray(g8 > 127), True, np.where(g8 > 127, 255, 0)),
        "I;16": (PIL.Image.fromarray(g16), True, g8),
        "I;16B": (PIL.Image.fromarray(g16.astype(">u2")), True, g8),
        "I": (PIL.Image.fromarray(g16.astype(np.int32)), True, g8),  # taken as 16-bit without a file saying more
        "F": (PIL.Image.fromarray(g8 / np.float32(255)), True, g8),
        "LA over white": (PIL.Image.fromarray(np.stack([zero, g8], -1), "LA"), True, full - g8),
        "La": (PIL.Image.fromarray(np.stack([g8, full], -1), "LA").convert("La"), True, g8),
        "P gray": (gray_palette, True, g8),
        "P with a transparent entry": (transparent_palette, True, np.where(g8 == g8[0, 0], 255, g8)),
        "PA": (PIL.Image.fromarray(np.stack([g8, g8, g8, full], -1), "RGBA").convert("PA"), True, g8),
        "RGB": (PIL.Image.fromarray(rgb), False, rgb),
        "RGBA over white": (PIL.Image.fromarray(np.dstack([rgb, g8])), False,  # alpha: the gradient
                            (rgb * alpha + 255 * (255 - alpha) + 127) // 255),
        "RGBa": (PIL.Image.fromarray(np.dstack([rgb, full])).convert("RGBa"), False, rgb),
        "P colour": (PIL.Image.fromarray(rgb).convert("P"), False, None),
        "CMYK": (PIL.Image.fromarray(rgb).convert("CMYK"), False, rgb),
        "YCbCr": (PIL.Image.fromarray(rgb).convert("YCbCr"), False, None),
        "HSV": (PIL.Image.fromarray(rgb).convert("HSV"), False, None),
        "RGBX": (PIL.Image.fromarray(rgb).convert("RGBX"), False, rgb),
    }
    for name, (image, gray, expected) in cases.items():
        converted = to_l_or_rgb(image)
        assert is_grayscale(image) == gray, name
        assert converted.mode == ("L" if gray else "RGB"), name
        if expected is not None:
            np.testing.assert_array_equal(np.asarray(converted), expected, err_msg=name)
    with pytest.raises(ValueError, match=r"float image \(mode 'F'\) with values from 0 to 255; .* in \[0, 1\]"):
        to_l_or_rgb(PIL.Image.fromarray(g8.astype(np.float32)))
    with pytest.raises(ValueError, match=r"with values from 0 to 0.5 and NaN or inf; float pixels"):
        to_l_or_rgb(PIL.Image.fromarray(np.array([[0, 0.5], [np.nan, np.inf]], np.float32)))
    with pytest.raises(ValueError, match=r"\(mode 'I'\) with values from -5 to 0, outside 0 .. 65535"):
        to_l_or_rgb(PIL.Image.fromarray(np.array([[-5, 0]], np.int32)))


def test_float_images_outside_zero_one_are_refused_with_the_reason(tmp_path):
    (tmp_path / "floats").mkdir()
    for i in range(2):
        PIL.Image.fromarray(gradient(8).astype(np.float32)).save(tmp_path / "floats" / f"{i}.tiff")
    with pytest.raises(DataError, match=r"2 of 2 images .* failed to decode.*0.tiff: ValueError: a 32-bit float image"):
        load("--dataset", tmp_path / "floats")


def test_image_folder_with_class_subfolders(tmp_path):
    write_images(tmp_path / "pets" / "cat", [((6, 6), "RGB")] * 2)
    write_images(tmp_path / "pets" / "dog", [((6, 6), "RGB")] * 3)
    data = load("--dataset", tmp_path / "pets", "--resolution", 4, "--center_crop")
    assert data.num_classes == 2 and data.id2label == {0: "cat", 1: "dog"}
    assert sorted(data.dataset[i]["label"] for i in range(5)) == [0, 0, 1, 1, 1]
    assert data.dataset[0]["sample"].shape == (3, 4, 4)
    assert load("--dataset", tmp_path / "pets", "--label_column", "none").num_classes is None


def test_center_crop_and_seeded_random_crop(tmp_path):
    folder = write_images(tmp_path / "wide", [((16, 8), "L")] * 3)  # 16 wide, 8 high: crops slide horizontally
    center = load("--dataset", folder, "--center_crop")
    assert center.sample_shape == (1, 8, 8)
    full = np.linspace(0, 255, 16).astype(np.uint8) / 127.5 - 1
    np.testing.assert_allclose(center.dataset[0]["sample"][0, 0].numpy(), full[4:12], atol=1e-6)
    center.set_epoch(5)
    np.testing.assert_allclose(center.dataset[0]["sample"][0, 0].numpy(), full[4:12], atol=1e-6)

    def crops(data, epochs, index=0):
        seen = []
        for epoch in epochs:
            data.set_epoch(epoch)
            seen.append(data.dataset[index]["sample"])
        return seen

    random = load("--dataset", folder, seed=1)
    first = crops(random, range(12))
    assert len({tuple(s[0, 0].tolist()) for s in first}) > 3  # the crop moves from epoch to epoch
    for s in first:  # ... and is always a window of the ramp
        row = s[0, 0].numpy()
        offsets = [o for o in range(9) if np.allclose(row, full[o : o + 8], atol=1e-6)]
        assert len(offsets) == 1
    again = load("--dataset", folder, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(first, crops(again, range(12))))
    other_seed = crops(load("--dataset", folder, "--data_seed", 2, seed=1), range(12))
    assert not all(torch.equal(a, b) for a, b in zip(first, other_seed))
    # the crop depends on the index too, and not on the order items are read in
    random.set_epoch(3)
    by_index = [random.dataset[i]["sample"] for i in (2, 1, 0)]
    assert torch.equal(by_index[2], first[3])


def test_random_flip_is_a_function_of_seed_epoch_index(tmp_path):
    folder = write_images(tmp_path / "square", [((8, 8), "RGB")] * 2)
    plain = load("--dataset", folder).dataset[0]["sample"]
    data = load("--dataset", folder, "--random_flip", seed=3)
    samples = []
    for epoch in range(16):
        data.set_epoch(epoch)
        samples.append(data.dataset[0]["sample"])
    flipped = [torch.equal(s, plain.flip(-1)) for s in samples]
    assert all(f or torch.equal(s, plain) for f, s in zip(flipped, samples))
    assert 0 < sum(flipped) < 16
    replay = load("--dataset", folder, "--random_flip", seed=3)
    replay.set_epoch(11)
    assert torch.equal(replay.dataset[0]["sample"], samples[11])


def test_set_epoch_reaches_persistent_dataloader_workers(tmp_path):
    folder = write_images(tmp_path / "wide", [((16, 8), "L")] * 4)
    data = load("--dataset", folder, seed=0)
    expected = {}
    for epoch in (0, 1, 2):
        data.set_epoch(epoch)
        expected[epoch] = torch.stack([data.dataset[i]["sample"] for i in range(4)])
    loader = torch.utils.data.DataLoader(data.dataset, batch_size=4, num_workers=1, persistent_workers=True)
    for epoch in (0, 1, 2):
        data.set_epoch(epoch)
        (batch,) = list(loader)
        assert torch.equal(batch["sample"], expected[epoch]) and batch["index"].tolist() == [0, 1, 2, 3]


# ------------------------------------------------------------------------------------------- save_to_disk data
def test_save_to_disk_with_custom_image_column(tmp_path):
    import datasets

    images = [PIL.Image.fromarray(np.full((12, 10, 3), 40 * i, np.uint8)) for i in range(3)]
    hf = datasets.Dataset.from_dict(
        {"picture": images, "caption": ["a", "b", "c"]},
        features=datasets.Features({"picture": datasets.Image(), "caption": datasets.Value("string")}),
    )
    hf.save_to_disk(str(tmp_path / "saved"))
    data = load("--dataset", tmp_path / "saved", "--image_column", "picture")
    assert data.source == "disk" and data.sample_shape == (3, 10, 10) and len(data.dataset) == 3
    assert torch.allclose(data.dataset[2]["sample"], torch.full((3, 10, 10), 80 / 127.5 - 1))
    assert load("--dataset", tmp_path / "saved").details["image_column"] == "picture"  # the first Image column
    with pytest.raises(DataError, match=r"--image_column 'photo' is not a column .*picture \(Image\), caption"):
        load("--dataset", tmp_path / "saved", "--image_column", "photo")


def test_save_to_disk_dataset_dict_uses_train(tmp_path):
    import datasets

    def split(n, value):
        return datasets.Dataset.from_dict({"image": [PIL.Image.new("L", (8, 8), value)] * n, "label": [1] * n})

    datasets.DatasetDict({"train": split(5, 255), "test": split(2, 0)}).save_to_disk(str(tmp_path / "dd"))
    data = load("--train_data_dir", tmp_path / "dd")
    assert len(data.dataset) == 5 and data.dataset[0]["sample"].max() == 1.0
    assert data.num_classes == 2 and data.dataset[4]["label"] == 1
    datasets.DatasetDict({"test": split(2, 0)}).save_to_disk(str(tmp_path / "no_train"))
    with pytest.raises(DataError, match="no 'train' split .*test"):
        load("--dataset", tmp_path / "no_train")


def test_save_to_disk_vector_data(tmp_path):
    import datasets

    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3)).astype(np.float32)
    datasets.Dataset.from_dict({"x": x.tolist(), "label": ["b", "a"] * 10}).save_to_disk(str(tmp_path / "vec"))
    data = load("--dataset_name", tmp_path / "vec")
    assert data.kind == "vector" and data.sample_shape == (3,) and len(data.dataset) == 20
    assert data.num_classes == 2 and data.id2label == {0: "a", 1: "b"} and data.dataset[0]["label"] == 1
    np.testing.assert_array_equal(data.dataset[7]["sample"].numpy(), x[7])
    assert data.describe() == f"{tmp_path / 'vec'}: 20 vectors of dimension 3, 2 classes"
    datasets.Dataset.from_dict({"points": x.tolist()}).save_to_disk(str(tmp_path / "points"))
    assert load("--dataset", tmp_path / "points", "--vector_column", "points").sample_shape == (3,)


# ---------------------------------------------------------------------------------------------------- bad data
def test_corrupt_images_are_skipped_or_refused(tmp_path, caplog):
    folder = write_images(tmp_path / "some_bad", [((8, 8), "RGB")] * 9, bad=1)
    caplog.set_level(logging.WARNING, logger="genzoo.data")
    data = load("--dataset", folder, "--max_bad_images_fraction", 0.2)
    assert len(data.dataset) == len(data.hf_dataset) == 9 and data.num_skipped == 1
    assert "(1 undecodable images skipped)" in data.describe()
    (record,) = [r for r in caplog.records if r.name == "genzoo.data"]
    assert "skipped 1 of 10 images that failed to decode: first: " in record.getMessage()
    assert "bad0.png" in record.getMessage()
    assert all(data.dataset[i]["sample"].shape == (3, 8, 8) for i in range(9))
    with pytest.raises(DataError, match=r"1 of 10 images .* failed to decode.*max_bad_images_fraction=0.01.*bad0.png"):
        load("--dataset", folder)


def test_empty_and_missing_data(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        load("--dataset", tmp_path / "empty")
    with pytest.raises(DataError, match="no such folder: './data/x'"):
        load("--dataset", "./data/x")
    with pytest.raises(DataError, match="is a file"):
        (tmp_path / "file.txt").write_text("hi")
        load("--dataset", tmp_path / "file.txt")


def test_missing_image_column_lists_the_columns(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"text": ["a", "b"], "score": [1.0, 2.0]}).save_to_disk(str(tmp_path / "text"))
    with pytest.raises(DataError, match=r"columns text \(Value\), score \(Value\).*--image_column"):
        load("--dataset", tmp_path / "text")
    datasets.Dataset.from_dict({"image": []}, features=datasets.Features({"image": datasets.Image()})).save_to_disk(
        str(tmp_path / "none")
    )
    with pytest.raises(DataError, match="is empty"):
        load("--dataset", tmp_path / "none")


def test_names_that_resolve_to_nothing():
    with pytest.raises(DataError, match="did you mean 'digits'"):
        load("--dataset", "digitz")
    with pytest.raises(DataError, match="did you mean '8gaussians'"):
        load("--dataset", "8gaussian")
    with pytest.raises(DataError, match="'someone/no-such-dataset'.*Hub could not be reached.*HF_HUB_OFFLINE"):
        load("--dataset", "someone/no-such-dataset")


@pytest.mark.parametrize("name", dataset_names())
def test_every_registered_data_set_trains_as_it_declares(name):
    """--dataset NAME gives the rows the registered data set declares: its kind, its sample shape, from "builtin"."""
    declared = registered_datasets()[name]
    data = load("--dataset", name, "--num_samples", 16, "--max_train_samples", 16)
    assert (data.kind, data.sample_shape, data.name, data.source) == (
        declared.data_kind, declared.sample_shape, name, "builtin")
    assert declared.data_kind in ("image", "vector") and len(data.dataset) == 16


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--num_channels", "2"], "--num_channels must be 1 .* or 3 .*, got 2"),
        (["--resolution", "3"], "--resolution must be an integer >= 4, got 3"),
        (["--max_train_samples", "0"], "--max_train_samples must be a positive int"),
        (["--max_bad_images_fraction", "1.5"], "between 0 and 1"),
        (["--data_seed", "-1"], "non-negative int"),
        (["--dataset", "moons", "--dataset_name", "circles"], "named twice.*--dataset 'moons'.*--dataset_name"),
        (["--dataset_name", "moons", "--train_data_dir", "./x"], "named twice"),
    ],
)
def test_bad_options(argv, message):
    with pytest.raises(DataError, match=message):
        load(*argv)
    assert issubclass(DataError, ValueError)


def test_diffusers_aliases(tmp_path):
    folder = write_images(tmp_path / "imgs", [((8, 8), "L")] * 2)
    assert load("--train_data_dir", folder).name == str(folder)
    assert load("--dataset_name", "moons").name == "moons"
    assert load("--dataset", folder, "--train_data_dir", folder).name == str(folder)  # the same twice is fine


def test_large_data_sets_skip_bad_images_lazily(tmp_path, monkeypatch, caplog):
    """Beyond VALIDATE_ALL_UP_TO images only the first VALIDATE_FIRST are checked at load time; a bad image met in
    training is replaced by the next good one, logged, and refused past the threshold."""
    from genzoo.data import ImageDataset, loading

    monkeypatch.setattr(loading, "VALIDATE_ALL_UP_TO", 6)
    monkeypatch.setattr(loading, "VALIDATE_FIRST", 3)
    folder = write_images(tmp_path / "big", [((8, 8), "L")] * 7)
    (folder / "zz_bad.png").write_bytes(b"not a png")  # sorts last: not among the first 3
    caplog.set_level(logging.WARNING, logger="genzoo.data")
    data = load("--dataset", folder)
    assert len(data.dataset) == 8 and data.details["checked_images"] == 3 and not data.details["in_memory"]
    bad = [i for i in range(8) if "zz_bad" in (data.dataset.hf_dataset[i]["image"]["path"] or "")]
    assert bad, "the corrupt file should be in the data set"
    item = data.dataset[bad[0]]
    assert item["index"] == bad[0] and item["sample"].shape == (1, 8, 8)
    assert any("zz_bad.png" in r.getMessage() for r in caplog.records if r.name == "genzoo.data")
    # the replacement brings its own caption (and label): each image keeps its caption
    (folder / "metadata.jsonl").write_text(
        "".join(f'{{"file_name": "{p.name}", "text": "{p.stem}"}}\n' for p in sorted(folder.glob("*.png")))
    )
    captioned = load("--dataset", folder, "--caption_column", "text")
    row = captioned.captions.index("zz_bad")
    replaced, following = captioned.dataset[row], captioned.dataset[(row + 1) % 8]
    assert replaced["index"] == row and replaced["caption"] == following["caption"] == captioned.captions[(row + 1) % 8]
    assert torch.equal(replaced["sample"], following["sample"])
    monkeypatch.setattr(ImageDataset, "min_tries_to_refuse", 1)
    fresh = load("--dataset", folder)
    with pytest.raises(DataError, match="1 of 1 images failed to decode"):
        fresh.dataset[bad[0]]


# -------------------------------------------------------------------------------------------------------- captions
def load_with(*argv, conditioning=None):
    """`load`, with the trainer's --conditioning option set (the data options read it from args)."""
    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    args = parser.parse_args([str(a) for a in argv])
    if conditioning is not None:
        args.conditioning = conditioning
    return load_training_data(args)


NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def test_digit_captions_name_their_digit():
    for label in range(10):
        phrasings = digit_captions(label)
        assert len(phrasings) >= 5 and len(set(phrasings)) == len(phrasings)
        assert str(label) in phrasings  # the bare numeral
        assert any(NUMBER_WORDS[label] in p.split() for p in phrasings)
        assert any(str(label) in p.split() for p in phrasings if p != str(label))
        for phrasing in phrasings:  # each names its digit, and no other
            words = set(phrasing.split())
            assert words & {str(label), NUMBER_WORDS[label]}
            assert not words & ({str(d) for d in range(10)} | set(NUMBER_WORDS)) - {str(label), NUMBER_WORDS[label]}
    assert "a handwritten seven" in digit_captions(7) and "the digit 7" in digit_captions(7)
    assert "an eight" in digit_captions(8) and "a one" in digit_captions(1)
    with pytest.raises(DataError, match="an int from 0 to 9, got 10"):
        digit_captions(10)


@pytest.mark.slow
def test_digits_captions_are_fixed_per_row_and_use_every_phrasing():
    from genzoo.data.builtin import digits_captions

    every = digits_dataset("all")
    assert every.features["caption"].dtype == "string"
    all_captions = every["caption"]
    assert digits_captions("all") == list(all_captions)
    for split in ("train", "test"):
        hf = digits_dataset(split)
        rows = digits_split_indices(split)
        captions, labels = list(hf["caption"]), list(hf["label"])
        assert captions == [all_captions[i] for i in rows]  # the same caption for a digit in every split
        for caption, label in zip(captions, labels):
            assert caption in digit_captions(label)
    train = digits_dataset("train")
    used = {(label, caption) for label, caption in zip(train["label"], train["caption"])}
    for label in range(10):  # the train split alone uses every phrasing of every class, in near-equal numbers
        assert {c for l, c in used if l == label} == set(digit_captions(label))
        counts = [list(zip(train["label"], train["caption"])).count((label, c)) for c in digit_captions(label)]
        assert max(counts) - min(counts) <= 8, counts


def test_caption_column_default_follows_conditioning():
    """Captions are read by default only for --conditioning text; --caption_column reads them anyway."""
    plain = load_with()
    assert plain.captions is None and "caption" not in plain.dataset[0] and plain.details["caption_column"] is None
    assert plain.describe() == "digits: 1437 images 1x8x8, 10 classes"
    assert load_with(conditioning="class").captions is None

    text = load_with("--max_train_samples", 100, conditioning="text")
    assert text.details["caption_column"] == "caption" and len(text.captions) == len(text.dataset) == 100
    assert text.captions == list(digits_dataset()["caption"][:100])
    assert text.describe() == f"digits: 100 images 1x8x8, 10 classes, {len(set(text.captions))} distinct captions"
    item = text.dataset[7]
    assert set(item) == {"sample", "index", "label", "caption"} and item["caption"] == text.captions[7]
    assert item["caption"] in digit_captions(item["label"])

    explicit = load_with("--caption_column", "caption", "--max_train_samples", 100)
    assert explicit.captions == text.captions
    assert load_with("--caption_column", "none", conditioning="text").captions is None
    assert load_with("--caption_column", "None").captions is None


def test_captions_in_dataloader_batches():
    data = load_with("--max_train_samples", 12, conditioning="text")
    loader = torch.utils.data.DataLoader(data.dataset, batch_size=5, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    batch = next(iter(loader))
    assert isinstance(batch["caption"], list) and len(batch["caption"]) == 5
    assert all(isinstance(c, str) for c in batch["caption"])
    assert batch["caption"] == [data.captions[i] for i in batch["index"].tolist()]


def test_caption_column_errors(tmp_path):
    import datasets

    images = [PIL.Image.new("L", (8, 8), 10 * i) for i in range(3)]
    hf = datasets.Dataset.from_dict({"image": images, "words": ["a cat", None, "a dog"], "label": [0, 1, 0]})
    hf.save_to_disk(str(tmp_path / "holes"))
    with pytest.raises(DataError, match=r"has no 'caption' or 'text' column; its columns are image \(Image\), "
                                        r"words \(Value\), label \(Value\): pass --caption_column"):
        load_with("--dataset", tmp_path / "holes", conditioning="text")
    with pytest.raises(DataError, match=r"--caption_column 'text' is not a column of .*image \(Image\), words"):
        load_with("--dataset", tmp_path / "holes", "--caption_column", "text")
    with pytest.raises(DataError, match=r"caption column 'words' of .* has no caption \(None\) for row 1"):
        load_with("--dataset", tmp_path / "holes", "--caption_column", "words", conditioning="text")
    with pytest.raises(DataError, match=r"caption column 'label' of .* holds Value\('int64'\).*row 0 is 0"):
        load_with("--dataset", tmp_path / "holes", "--caption_column", "label")
    # --max_train_samples drops the row without a caption first
    data = load_with("--dataset", tmp_path / "holes", "--caption_column", "words", "--max_train_samples", 1)
    assert data.captions == ["a cat"] and data.dataset[0]["caption"] == "a cat"
    # with no captions asked for, the column does not matter
    assert load_with("--dataset", tmp_path / "holes").captions is None
    with pytest.raises(DataError, match="has no 'caption' or 'text' column"):
        load_with("--dataset", "moons", "--num_samples", 10, conditioning="text")


def test_image_folder_with_metadata_captions(tmp_path, caplog):
    """An imagefolder's metadata.jsonl "text" column; bad images are skipped with their captions."""
    import json

    folder = write_images(tmp_path / "captioned", [((8, 8), "L")] * 5, bad=1)
    captions = {f"img{i:03d}.png": f"a ramp number {i}" for i in range(5)}
    captions["bad0.png"] = "never seen"
    (folder / "metadata.jsonl").write_text(
        "".join(json.dumps({"file_name": name, "text": text}) + "\n" for name, text in captions.items())
    )
    caplog.set_level(logging.WARNING, logger="genzoo.data")
    data = load_with("--dataset", folder, "--max_bad_images_fraction", 0.5, conditioning="text")
    assert data.num_skipped == 1 and len(data.dataset) == 5 and data.details["caption_column"] == "text"
    assert sorted(data.captions) == sorted(f"a ramp number {i}" for i in range(5))
    for i in range(5):  # each image keeps its own caption: the ramp of image k is divided by k % 3 + 1
        item = data.dataset[i]
        k = int(item["caption"].split()[-1])
        expected = np.tile(np.linspace(0, 255, 8).astype(np.uint8), (8, 1)) // (k % 3 + 1) / 127.5 - 1
        np.testing.assert_allclose(item["sample"][0].numpy(), expected, atol=1e-6)
    assert data.describe() == f"{folder}: 5 images 1x8x8, 5 distinct captions (1 undecodable images skipped)"


def test_image_folder_caption_none_names_the_file(tmp_path):
    import json

    folder = write_images(tmp_path / "holes", [((8, 8), "L")] * 3)
    (folder / "metadata.jsonl").write_text(
        "".join(json.dumps({"file_name": f"img{i:03d}.png", "caption": None if i == 2 else "x"}) + "\n"
                for i in range(3))
    )
    with pytest.raises(DataError, match=r"caption column 'caption' .* no caption \(None\) for row 2 \(.*img002.png\)"):
        load_with("--dataset", folder, conditioning="text")


def test_save_to_disk_vector_data_with_captions(tmp_path):
    import datasets

    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    datasets.Dataset.from_dict({"x": x.tolist(), "caption": [f"point {i}" for i in range(6)]}).save_to_disk(
        str(tmp_path / "vec")
    )
    data = load_with("--dataset", tmp_path / "vec", conditioning="text")
    assert data.kind == "vector" and data.captions == [f"point {i}" for i in range(6)]
    assert data.dataset[4]["caption"] == "point 4" and data.details["caption_column"] == "caption"
    batch = next(iter(torch.utils.data.DataLoader(data.dataset, batch_size=6)))
    assert batch["caption"] == data.captions and torch.equal(batch["sample"], torch.from_numpy(x))
    assert data.describe() == f"{tmp_path / 'vec'}: 6 vectors of dimension 2, 6 distinct captions"
