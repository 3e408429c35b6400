"""The built-in ``shapes`` data set and its evaluation: the shipped shapes classifier, shapes-FD, precision/recall,
attribute statistics, prompt faithfulness, and ``evaluate_pipeline(pipe, "shapes")``."""

import argparse
import json

import numpy as np
import pytest
import torch
from helpers import tiny_unet

import genzoo
from genzoo.conditioning import set_id2label
from genzoo.data.shapes import (
    COLOURS,
    OBJECT_TEMPLATES,
    POSITIONS,
    SHAPES,
    SIZES,
    TEMPLATE_ATTRIBUTES,
    UNSEEN_PAIRS,
    ShapeSpec,
    describe,
    draw_objects,
    render,
    shapes_split,
)
from genzoo.data.training_data import DataError
from genzoo.metrics import shapes as S
from genzoo.metrics.evaluate import evaluate_pipeline
from genzoo.metrics.features import frechet_distance
from genzoo.metrics.shapes import (
    evaluate_shapes,
    object_statistics,
    predict_slots,
    prompt_faithfulness,
    shapes_fd,
    shapes_fd_floor,
    shapes_features,
    shapes_reference_features,
)

pytestmark = pytest.mark.slow

LOW = 8  # the cheapest resolution: attributes are the same at every resolution


# --------------------------------------------------------------------------------------------------- data set
def test_splits_are_deterministic_and_prefixes_do_not_depend_on_the_size():
    from genzoo.data import shapes as data

    a = data._split.__wrapped__("train", 16, 20)  # uncached
    b = shapes_split("train", 16, 40)
    assert np.array_equal(a.pixels, b.pixels[:20]) and np.array_equal(a.slots, b.slots[:20])
    assert a.captions == b.captions[:20] and a.objects == b.objects[:20]
    assert np.array_equal(data._split.__wrapped__("train", 16, 20).pixels, a.pixels)  # deterministic
    assert shapes_split("train", LOW, 20).objects == a.objects  # the same attributes at every resolution
    assert a.pixels.dtype == np.uint8 and a.pixels.shape == (20, 16, 16, 3) and not a.pixels.flags.writeable
    rng1, rng2 = np.random.default_rng(5), np.random.default_rng(5)
    objects = draw_objects(rng1, "test")
    assert objects == draw_objects(rng2, "test")
    assert np.array_equal(render(objects, 24, rng1), render(objects, 24, rng2))


def test_captions_labels_and_held_out_compositions():
    for split in ("train", "test", "unseen"):
        data = shapes_split(split, LOW, 1000)
        has_unseen = [any((o.shape, o.colour) in UNSEEN_PAIRS for o in objs) for objs in data.objects]
        assert all(has_unseen) if split == "unseen" else not any(has_unseen), split
        assert data.labels.tolist() == [SHAPES.index(objs[0].shape) for objs in data.objects]
        counts = np.bincount([len(objs) for objs in data.objects], minlength=3)
        assert counts[0] == 0 and 0.3 < counts[2] / len(data.objects) < 0.5
        for i, (objs, caption) in enumerate(zip(data.objects, data.captions)):
            template = i % len(OBJECT_TEMPLATES)
            assert caption == describe(objs, template)
            for o in objs:
                for attribute in TEMPLATE_ATTRIBUTES[template]:
                    assert getattr(o, attribute) in caption
            positions = [o.position for o in objs]
            assert len(set(positions)) == len(positions)
            slots = data.slots[i]
            assert (slots[:, 0] >= 0).sum() == len(objs)
            for o in objs:
                assert slots[POSITIONS.index(o.position)].tolist() == [
                    SHAPES.index(o.shape), COLOURS.index(o.colour), SIZES.index(o.size)]


def test_load_training_data_and_mistakes():
    from genzoo.data import load_training_data

    # conditioning="text" makes the loader read the captions (it reads them only when asked)
    data = load_training_data(argparse.Namespace(dataset="shapes", resolution=16, num_samples=32, conditioning="text"))
    assert len(data) == 32 and data.sample_shape == (3, 16, 16) and data.kind == "image"
    assert data.num_classes == 4 and list(data.id2label.values()) == list(SHAPES)
    item = data.dataset[3]
    assert item["sample"].shape == (3, 16, 16) and -1 <= item["sample"].min() and item["sample"].max() <= 1
    split = shapes_split("train", 16, 32)
    assert item["label"] == split.labels[3] and item["caption"] == split.captions[3]
    expected = torch.from_numpy(split.pixels[3].astype(np.float32) / 127.5 - 1).permute(2, 0, 1)
    torch.testing.assert_close(item["sample"], expected)
    with pytest.raises(DataError, match="'validation'"):
        shapes_split("validation")
    with pytest.raises(DataError, match="resolution.*4"):
        shapes_split("test", 4)


# ------------------------------------------------------------------------------------------------- classifier
@pytest.fixture(scope="module")
def test32():
    return shapes_split("test", 32)


def test_shipped_classifier_matches_its_sidecar_and_reads_the_test_split(test32):
    info = json.loads(S.SIDECAR_PATH.read_text())
    assert S.weights_sha256() == info["weights_sha256"] and S.WEIGHTS_PATH.stat().st_size == info["weights_bytes"]
    assert S.WEIGHTS_PATH.stat().st_size < 1_000_000 and info["seed"] == 0
    for split in ("test", "unseen"):
        for attribute in ("shape", "colour", "size", "position"):
            assert info["accuracy"][split][attribute] >= 0.98, (split, attribute)
    model = S.load_shapes_classifier()
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == info["num_parameters"]
    predicted = predict_slots(test32.pixels)  # uint8 0..255
    assert predicted.shape == test32.slots.shape and predicted.dtype == np.int64
    from genzoo.metrics.train_shapes_classifier import slot_accuracies

    accuracy = slot_accuracies(predicted, test32.slots)
    for attribute, value in info["accuracy"]["test"].items():  # recomputed: as written at training time
        assert abs(value - accuracy[attribute]) <= 2 / 2000 + 1e-9, attribute


def test_training_script_writes_safetensors_and_sidecar(tmp_path):
    from genzoo.metrics import train_shapes_classifier as T

    weights, sidecar = tmp_path / "w.safetensors", tmp_path / "w.json"
    argv = ["--pool", "64", "--steps", "3", "--batch_size", "16", "--outliers", "4", "--other_resolutions", "",
            "--weights", str(weights), "--sidecar", str(sidecar)]
    threads, rng_state = torch.get_num_threads(), torch.get_rng_state()
    info = T.main([*argv, "--min_accuracy", "0"])
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng_state)
    assert json.loads(sidecar.read_text()) == info and info["training"]["steps"] == 3
    assert info["weights_sha256"] == S.weights_sha256(weights) and set(info["accuracy"]) == {"test", "unseen"}
    assert {"shape", "colour", "size", "position", "all"} == set(info["accuracy"]["test"])
    S.load_shapes_classifier(weights)
    bad = tmp_path / "bad.safetensors"
    with pytest.raises(SystemExit, match="not written"):
        T.main([*argv[:-4], "--weights", str(bad), "--sidecar", str(tmp_path / "bad.json")])
    assert not bad.exists()
    # the pool holds every composition, the held-out pairs included, and images with 0 to 4 shapes
    rng = np.random.default_rng(0)
    drawn = [T.draw_any_objects(rng) for _ in range(2000)]
    pairs = {(o.shape, o.colour) for objs in drawn for o in objs}
    assert set(UNSEEN_PAIRS) <= pairs and len(pairs) == 16
    assert {len(objs) for objs in drawn} == {0, 1, 2, 3, 4}


def test_layouts_and_value_ranges_give_the_same_features(test32):
    pixels = test32.pixels[:20]
    reference, logits = shapes_features(pixels)
    assert reference.shape == (20, S.FEATURE_DIM) and logits.shape == (20, 4, 11)
    unit = pixels.astype(np.float64) / 255
    import PIL.Image

    for images, value_range in [
        (unit, (0, 1)),  # (B, H, W, 3): output_type="np"
        (torch.from_numpy(unit).permute(0, 3, 1, 2).float(), (0, 1)),  # output_type="pt"
        (torch.from_numpy(unit * 2 - 1).permute(0, 3, 1, 2).float(), (-1, 1)),  # model space
        ([PIL.Image.fromarray(p) for p in pixels], (0, 1)),  # output_type="pil"
    ]:
        np.testing.assert_allclose(shapes_features(images, value_range)[0], reference, atol=1e-4)
    with pytest.raises(ValueError, match="need 3"):
        shapes_features(unit.mean(-1))
    with pytest.raises(ValueError, match="value_range=\\(-1, 1\\)"):
        shapes_features(unit * 2 - 1)
    # 64x64 copies (nearest) are area-averaged back exactly
    big = np.repeat(np.repeat(pixels, 2, 1), 2, 2)
    np.testing.assert_allclose(shapes_features(big)[0], reference, atol=1e-3)


# ---------------------------------------------------------------------------------------------------- metrics
def test_shapes_fd_floor_real_data_and_noise():
    floor = shapes_fd_floor(16)
    train = shapes_reference_features("train", 16)
    assert train.shape == (10_000, S.FEATURE_DIM)
    assert floor == pytest.approx(frechet_distance(train, shapes_reference_features("test", 16)))
    assert 0 < floor < 30
    real = evaluate_shapes(shapes_split("train", 16).pixels[:2000])  # 2000 real images: a little above the floor
    from genzoo.data import get_dataset

    assert get_dataset("shapes").real_data_floor(2000, resolution=16) == real
    assert floor < real["shapes_fd"] < 2.5 * floor and real["shapes_fd_floor"] == floor
    assert real["resolution"] == 16 and real["reference_size"] == 2000 and real["num_samples"] == 2000
    assert real["precision"] > 0.9 and real["recall"] > 0.9
    assert "digits_fd" not in real and not any("fid" in key for key in real)
    assert shapes_fd(shapes_split("train", 16).pixels[:2000]) == real["shapes_fd"]
    noise = np.random.default_rng(0).random((500, 16, 16, 3))
    result = evaluate_shapes(noise)
    assert result["shapes_fd"] > 100 * real["shapes_fd"] and result["precision"] < 0.05


def test_attribute_statistics_and_class_accuracy():
    test16 = shapes_split("test", 16)
    result = evaluate_shapes(test16.pixels[:400], asked_labels=test16.labels[:400])
    assert result["class_accuracy"] > 0.95  # at 16x16 small shapes are 3 pixels across: harder to read than at 32
    assert evaluate_shapes(test16.pixels[:400], asked_labels=(test16.labels[:400] + 1) % 4)["class_accuracy"] < 0.5
    histogram = result["num_objects_histogram"]
    assert sum(histogram) == 400 and histogram[0] == histogram[3] == histogram[4] == 0
    for key in ("shape_fractions", "colour_fractions", "size_fractions", "position_fractions"):
        assert sum(result[key].values()) == pytest.approx(1) and all(0 <= v <= 1 for v in result[key].values())
    # no held-out pair in "test" (small shapes misread at 16x16 make about 2 %)
    assert result["pair_coverage"] == 0.75 and result["unseen_pair_fraction"] < 0.03
    json.dumps(result)  # JSON-ready
    stats = object_statistics(np.full((3, 4, 3), -1))
    assert stats["num_objects_histogram"] == [3, 0, 0, 0, 0] and stats["pair_coverage"] == 0
    assert stats["shape_fractions"] == dict.fromkeys(SHAPES, 0.0)


def test_prompt_faithfulness_rules():
    red_circle = ShapeSpec("circle", "red", "small", "top left")
    blue_square = ShapeSpec("square", "blue", "large", "bottom right")
    slots = np.full((4, 4, 3), -1)
    slots[0, 0] = [0, 0, 0]  # exactly the red circle
    slots[1, 1] = [0, 0, 1]  # the red circle, large, in the top right
    slots[2, 0] = [0, 0, 0]
    slots[2, 3] = [1, 2, 1]  # both asked objects, plus an extra one
    slots[2, 2] = [3, 1, 0]
    result = prompt_faithfulness(slots, [[red_circle], [red_circle], [red_circle, blue_square], []])
    assert result["faithfulness_shape"] == result["faithfulness_colour"] == 1.0
    assert result["faithfulness_size"] == result["faithfulness_position"] == 3 / 4
    assert result["faithfulness_objects"] == 3 / 4 and result["faithfulness_pair"] == 1.0
    assert result["faithfulness_count"] == 3 / 4  # image 2 has an extra object; image 3 asked for none, got none
    assert result["faithfulness_all"] == 2 / 4 and result["faithfulness_asked_objects"] == 4
    assert "faithfulness_heldout_pair" not in result
    # only the named attributes count: "a red circle" is matched by the one in the top right
    loose = prompt_faithfulness(slots[1:2], [[red_circle]], named_attributes=("shape", "colour"))
    assert loose["faithfulness_all"] == 1.0 and "faithfulness_size" not in loose
    blue_circle = ShapeSpec("circle", "blue", "small", "top left")
    assert prompt_faithfulness(slots[:1], [[blue_circle]])["faithfulness_heldout_pair"] == 0.0
    with pytest.raises(ValueError, match="unknown attributes"):
        prompt_faithfulness(slots, [[]] * 4, named_attributes=("shape", "texture"))


def test_real_images_are_faithful_to_their_own_objects_and_not_to_others():
    unseen = shapes_split("unseen", 32)
    slots = predict_slots(unseen.pixels)
    result = prompt_faithfulness(slots, unseen.objects)
    for attribute in ("shape", "colour", "size", "position"):
        assert 0.97 <= result[f"faithfulness_{attribute}"] <= 1, attribute
    assert result["faithfulness_all"] > 0.95 and result["faithfulness_heldout_pair"] > 0.97
    assert object_statistics(slots)["unseen_pair_fraction"] > 0.5  # the classifier reads held-out compositions too
    shuffled = prompt_faithfulness(slots, unseen.objects[1:] + unseen.objects[:1])
    assert shuffled["faithfulness_all"] < 0.1
    for attribute in ("shape", "colour", "size", "position"):
        assert 0 <= shuffled[f"faithfulness_{attribute}"] < 0.8, attribute
    templated = prompt_faithfulness(slots[:200], unseen.objects[:200],
                                    named_attributes=[TEMPLATE_ATTRIBUTES[i % 4] for i in range(200)])
    assert templated["faithfulness_all"] > 0.95
    # evaluate_shapes gives the same numbers (at 16x16, whose floor the other tests compute anyway)
    unseen16 = shapes_split("unseen", 16, 100)
    through = evaluate_shapes(unseen16.pixels, asked_objects=unseen16.objects)
    assert through["faithfulness_all"] == prompt_faithfulness(predict_slots(unseen16.pixels),
                                                              unseen16.objects)["faithfulness_all"]


# ------------------------------------------------------------------------------------------ evaluate_pipeline
def shapes_pipeline(conditioning="none"):
    torch.manual_seed(0)
    if conditioning == "text":
        from diffusers import UNet2DConditionModel

        from genzoo.text import build_caption_tokenizer, build_text_encoder

        tokenizer = build_caption_tokenizer(shapes_split("train", LOW, 200).captions, model_max_length=24)
        text_encoder = build_text_encoder(tokenizer, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                          intermediate_size=32)
        unet = UNet2DConditionModel(
            sample_size=16, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
            norm_num_groups=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16, attention_head_dim=8,
        )
        pipe = genzoo.FlowMatchingPipeline(unet=unet, scheduler=genzoo.FlowMatchEulerScheduler(),
                                           tokenizer=tokenizer, text_encoder=text_encoder)
    else:
        unet = tiny_unet(channels=3, size=16, **({"num_class_embeds": 5} if conditioning == "class" else {}))
        if conditioning == "class":
            set_id2label(unet, dict(enumerate(SHAPES)))
        pipe = genzoo.DDPMPipeline(unet=unet, scheduler=genzoo.DDPMScheduler(num_train_timesteps=50))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _finite(result, keys):
    for key in keys:
        assert np.isfinite(result[key]), key


def test_evaluate_pipeline_unconditional_and_class_conditional():
    base = ("shapes_fd", "shapes_fd_floor", "precision", "recall", "pair_coverage", "unseen_pair_fraction")
    result = evaluate_pipeline(shapes_pipeline(), "shapes", num_samples=16, steps=2)
    _finite(result, base)
    assert result["resolution"] == 16 and sum(result["num_objects_histogram"]) == 16 and result["dataset"] == "shapes"
    assert "class_accuracy" not in result and "conditioning" not in result
    conditional = evaluate_pipeline(shapes_pipeline("class"), "shapes", num_samples=16, steps=2)
    _finite(conditional, base + ("class_accuracy",))
    assert conditional["conditioning"] == "class" and 0 <= conditional["class_accuracy"] <= 1
    with pytest.raises(ValueError, match="must be 'digits' or 'shapes' for image pipelines; got 'moons'"):
        evaluate_pipeline(shapes_pipeline(), "moons", num_samples=4, steps=1)
    grey = genzoo.DDPMPipeline(unet=tiny_unet(size=16), scheduler=genzoo.DDPMScheduler(num_train_timesteps=50))
    with pytest.raises(ValueError, match="'shapes' needs RGB samples"):
        evaluate_pipeline(grey, "shapes", num_samples=6, steps=1)  # at least min_samples


def test_evaluate_pipeline_text_conditional_asks_for_test_and_unseen_compositions():
    result = evaluate_pipeline(shapes_pipeline("text"), "shapes", num_samples=12, steps=1)
    assert result["conditioning"] == "text" and result["faithfulness_images"] == 12
    assert result["unseen_faithfulness_images"] == 3 and "unseen_faithfulness_heldout_pair" in result
    for prefix in ("", "unseen_"):
        for key in ("shape", "colour", "size", "position", "all", "count", "pair"):
            assert 0 <= result[f"{prefix}faithfulness_{key}"] <= 1, prefix + key
    _finite(result, ("shapes_fd", "precision", "recall"))


def test_genzoo_eval_reads_the_data_set_from_the_recipe(tmp_path, capsys):
    from genzoo.cli import main

    folder = tmp_path / "ddpm-shapes"
    shapes_pipeline().save_pretrained(folder)
    (folder / "recipe.yaml").write_text("dataset: shapes\nresolution: 16\n")
    code = main(["eval", str(folder), "--num-samples", "8", "--steps", "1", "--out", str(tmp_path / "e.json")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["dataset"] == "shapes" and np.isfinite(json.loads(out)["shapes_fd"])
    code = main(["eval", str(folder), "--dataset", "moons", "--num-samples", "8", "--steps", "1",
                 "--out", str(tmp_path / "e.json")])
    err = capsys.readouterr().err
    assert code == 2 and "'digits' or 'shapes'" in err and len(err.splitlines()) == 1
