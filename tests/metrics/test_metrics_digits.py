"""genzoo.metrics.digits: the shipped digits classifier, digits-FD, precision/recall, class coverage and entropy."""

import json
import math

import numpy as np
import PIL.Image
import pytest
import torch

from genzoo.data.builtin import digits_arrays
from genzoo.metrics import digits as D
from genzoo.metrics.digits import (
    class_entropy,
    class_histogram,
    coverage,
    digits_fd_floor,
    digits_features,
    digits_reference_features,
    digits_reference_images,
    evaluate_digits,
    load_digits_classifier,
)
from genzoo.metrics.features import frechet_distance, precision_recall

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def test_digits():
    pixels, labels = digits_arrays("test")
    return pixels, labels


# ------------------------------------------------------------------------------------------------- classifier
def test_shipped_weights_match_their_sidecar_and_reach_97_percent(test_digits):
    info = json.loads(D.SIDECAR_PATH.read_text())
    assert D.weights_sha256() == info["weights_sha256"] and D.WEIGHTS_PATH.stat().st_size == info["weights_bytes"]
    assert D.WEIGHTS_PATH.stat().st_size < 400_000 and not D.WEIGHTS_PATH.with_suffix(".pt").exists()
    assert (info["train_size"], info["test_size"], info["seed"]) == (1437, 360, 0)
    model = load_digits_classifier()
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == info["num_parameters"]
    pixels, labels = test_digits
    _, logits = digits_features(pixels)  # uint8 0..255
    accuracy = float((logits.argmax(1) == labels).mean())
    assert accuracy >= 0.97
    # recomputed here it matches the accuracy written at training time (one borderline image may flip on other BLAS)
    assert abs(accuracy - info["test_accuracy"]) <= 1 / 360 + 1e-9
    x = torch.from_numpy(pixels.astype(np.float32) / 127.5 - 1)[:, None]
    with torch.no_grad():
        assert torch.equal(model(x).argmax(1), torch.from_numpy(logits.argmax(1)))


def test_training_script_writes_safetensors_and_sidecar(tmp_path, capsys):
    from genzoo.metrics import train_digits_classifier as T

    weights, sidecar = tmp_path / "w.safetensors", tmp_path / "w.json"
    argv = ["--steps", "30", "--min_accuracy", "0", "--weights", str(weights), "--sidecar", str(sidecar)]
    threads, deterministic, rng_state = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), \
        torch.get_rng_state()
    info = T.main(argv)
    assert torch.get_num_threads() == threads and torch.are_deterministic_algorithms_enabled() == deterministic
    assert torch.equal(torch.get_rng_state(), rng_state)  # the global state is left as it was
    assert json.loads(sidecar.read_text()) == info and info["training"]["steps"] == 30
    assert info["weights_sha256"] == D.weights_sha256(weights) and info["test_size"] == 360
    assert {"test_accuracy", "seed", "train_size", "architecture", "torch_version", "date"} <= set(info)
    load_digits_classifier(weights)
    with pytest.raises(SystemExit, match="not written"):
        T.main(["--steps", "2", "--weights", str(tmp_path / "bad.safetensors"), "--sidecar", str(tmp_path / "b.json")])
    assert not (tmp_path / "bad.safetensors").exists()


# ------------------------------------------------------------------------------------------------------ inputs
def test_layouts_and_value_ranges_give_the_same_features(test_digits):
    pixels = test_digits[0][:50]
    reference, logits = digits_features(pixels)
    assert reference.dtype == np.float64 and reference.shape == (50, D.FEATURE_DIM) and logits.shape == (50, 10)
    unit = pixels.astype(np.float64) / 255
    model_space = torch.from_numpy(unit * 2 - 1).float()[:, None]
    for images, value_range in [
        (unit, (0, 1)),  # (B, H, W)
        (unit[..., None], (0, 1)),  # (B, H, W, 1): pipelines' output_type="np"
        (torch.from_numpy(unit)[:, None].float(), (0, 1)),  # (B, 1, H, W): output_type="pt"
        (model_space, (-1, 1)),  # TrainingData samples
        ([PIL.Image.fromarray(p) for p in pixels], (0, 1)),  # output_type="pil"
        (np.repeat(unit[..., None], 3, axis=-1), (0, 1)),  # RGB
    ]:
        np.testing.assert_allclose(digits_features(images, value_range)[0], reference, atol=1e-4)
    with pytest.raises(ValueError, match="value_range=\\(-1, 1\\)"):
        digits_features(model_space)  # [-1, 1] data read as [0, 1]
    with pytest.warns(UserWarning, match="no value is below 0"):
        digits_features(torch.from_numpy(unit)[:, None].float(), value_range=(-1, 1))
    with pytest.raises(ValueError, match="NaN"):
        digits_features(np.full((2, 8, 8), np.nan))


def test_upsampled_digits_give_nearly_the_same_features(test_digits):
    """Area averaging undoes an exact (nearest) upsampling: 16x16 and 32x32 copies score as the 8x8 digits."""
    x = digits_reference_images("test")  # (360, 1, 8, 8) in [-1, 1]
    features, logits = digits_features(x, value_range=(-1, 1))
    for factor in (2, 4):
        big = x.repeat_interleave(factor, 2).repeat_interleave(factor, 3)
        big_features, big_logits = digits_features((big + 1) / 2)  # as a pipeline returns it, in [0, 1]
        np.testing.assert_allclose(big_features, features, atol=1e-3)
        assert np.array_equal(big_logits.argmax(1), logits.argmax(1))
    # bilinear upsampling (what --resolution 16 trains on) blurs: evaluate_digits compares it with the same round trip
    x16 = digits_reference_images("test", 16)
    assert x16.shape == (360, 1, 16, 16)
    assert (digits_features(x16, value_range=(-1, 1))[1].argmax(1) == test_digits[1]).mean() > 0.95
    np.testing.assert_allclose(
        digits_reference_features("test", 16), digits_features(x16, value_range=(-1, 1))[0], atol=1e-6
    )


# -------------------------------------------------------------------------------------------- Fréchet distance
def test_frechet_distance_basics():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 6)) @ rng.standard_normal((6, 6))
    assert frechet_distance(x, x) == pytest.approx(0, abs=1e-8)
    shift = np.array([0.5, 0, 0, 0, 0, 0])
    assert frechet_distance(x, x + shift) == pytest.approx(0.25, rel=1e-6)  # same covariance: ||shift||^2
    values = [frechet_distance(x, x + s * shift) for s in (0, 1, 2, 4)]
    assert values == sorted(values) and values[-1] == pytest.approx(4.0, rel=1e-6)
    y = rng.standard_normal((400, 6)) * 2 + 1
    assert frechet_distance(x, y) == pytest.approx(frechet_distance(y, x), rel=1e-6)
    # diagonal Gaussians: sum (m_a - m_b)^2 + (s_a - s_b)^2 (sample estimates: compare with their own moments)
    a, b = rng.standard_normal((20000, 2)), rng.standard_normal((20000, 2)) * [1, 3] + [0, 1]
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + ((a.std(0, ddof=1) - b.std(0, ddof=1)) ** 2).sum()
    assert frechet_distance(a, b) == pytest.approx(expected, abs=0.02)
    # a constant feature (singular covariance) still gives a finite value
    singular = np.concatenate([x, np.zeros((500, 1))], axis=1)
    assert math.isfinite(frechet_distance(singular, singular + 0.1)) and frechet_distance(singular, singular) < 1e-6
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(x, x[:, :3])


def test_train_test_floor_is_small_and_noise_is_far():
    floor = digits_fd_floor()
    assert floor == frechet_distance(digits_reference_features("train"), digits_reference_features("test"))
    assert 0 < floor < 20
    noise = np.random.default_rng(0).random((360, 8, 8, 1))
    result = evaluate_digits(noise)
    assert result["digits_fd"] > 100 * floor and result["precision"] < 0.05 and result["recall"] < 0.05
    real = evaluate_digits(digits_arrays("train")[0][:, :, :, None])
    assert real["digits_fd"] == pytest.approx(floor, rel=1e-5) and real["digits_fd_floor"] == floor
    # the registered data set's real-data floor is that measurement; smaller real sets score higher
    from genzoo.data import get_dataset

    assert get_dataset("digits").real_data_floor(1437)["digits_fd"] == pytest.approx(real["digits_fd"], rel=1e-5)
    assert get_dataset("digits").real_data_floor(360, seed=1)["digits_fd"] > 1.5 * floor
    assert real["precision"] > 0.9 and real["recall"] > 0.9 and real["coverage"] == 1.0
    assert real["class_entropy"] > 0.99 * math.log(10)


def test_evaluate_digits_at_higher_resolution_uses_the_matching_reference():
    x16 = digits_reference_images("train", 16)
    result = evaluate_digits((x16 + 1) / 2)
    assert result["resolution"] == 16 and result["digits_fd_floor"] == digits_fd_floor(16)
    assert result["digits_fd"] == pytest.approx(digits_fd_floor(16), rel=1e-5) and result["digits_fd"] < 20


# --------------------------------------------------------------------------------------------- precision/recall
def test_precision_recall(test_digits):
    real = digits_reference_features("test")
    assert precision_recall(real, real) == (1.0, 1.0)
    pixels, labels = digits_arrays("train")
    zeros, zero_logits = digits_features(pixels[labels == 0])
    precision, recall = precision_recall(real, zeros)
    assert precision > 0.8 and recall < 0.2  # good zeros, but only one digit in ten
    assert coverage(class_histogram(zero_logits)) == 0.1
    far = real + 1000.0
    assert precision_recall(real, far) == (0.0, 0.0)
    with pytest.raises(ValueError, match="k must be"):
        precision_recall(real[:5], real[:5], k=5)


def test_class_histogram_coverage_entropy():
    labels = np.array([0, 0, 1, 2])
    logits = np.eye(10)[labels] * 3.0
    for x in (labels, logits, torch.softmax(torch.from_numpy(logits), 1).numpy()):
        assert class_histogram(x).tolist() == [2, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    histogram = class_histogram(labels)
    assert coverage(histogram) == 0.3
    assert class_entropy(histogram) == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    uniform = class_histogram(np.arange(1000) % 10)
    assert coverage(uniform) == 1.0 and class_entropy(uniform) == pytest.approx(math.log(10))
    assert class_entropy(class_histogram(np.zeros(7, dtype=int))) == 0.0
    rare = np.bincount(np.r_[np.zeros(995, int), np.full(5, 3)], minlength=10)  # class 3: 0.5 % < 1 %
    assert coverage(rare) == 0.1 and coverage(rare, min_fraction=0.0) == 0.2
    with pytest.raises(ValueError):
        class_histogram(np.zeros((4, 3)))


# ------------------------------------------------------------------------------------------------ determinism
def test_evaluate_digits_is_deterministic_and_json_ready(test_digits):
    rng = np.random.default_rng(3)
    pixels = digits_arrays("train")[0][rng.choice(1437, 500, replace=False)]
    images = pixels[:, :, :, None] / 255.0
    first = evaluate_digits(images, seed=0)
    assert first == evaluate_digits(images, seed=0) == json.loads(json.dumps(first))
    assert {"digits_fd", "precision", "recall", "coverage", "class_entropy", "class_histogram", "num_samples",
            "reference_size"} <= set(first)
    assert first["num_samples"] == 500 and first["reference_size"] == 360 and first["precision_recall_size"] == 360
    assert sum(first["class_histogram"]) == 500 and first["resolution"] == 8
    other = evaluate_digits(images, seed=1)  # another subsample for precision/recall; the rest is unchanged
    assert other["digits_fd"] == first["digits_fd"] and other["class_histogram"] == first["class_histogram"]
