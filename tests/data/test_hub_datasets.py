"""Training data from a Hub dataset id, end to end against the Hub-compatible server of tests/hub_server.py (the `hub`
fixture points `datasets` at it too): `Dataset.push_to_hub`, then genzoo's `load_training_data` and the trainer read it
back through `datasets.load_dataset`, as they would from huggingface.co."""

import argparse
import json
import socket

import datasets
import numpy as np
import PIL.Image
import pytest

from hub_server import point_clients_at
from huggingface_hub import HfFileSystem

from genzoo.data import DataError, add_data_arguments, load_training_data
from genzoo.training import parse_args, train


@pytest.fixture(autouse=True)
def no_other_host(hub, monkeypatch):
    """Fail the test if anything looks up a host name other than the server's (a real host, or one no DNS knows)."""
    looked_up = []
    getaddrinfo = socket.getaddrinfo

    def guarded(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in ("127.0.0.1", "localhost", "::1"):
            looked_up.append(name)
            raise socket.gaierror(socket.EAI_NONAME, f"test guard: no network ({name})")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    yield
    assert not looked_up, f"host names looked up besides the test Hub's: {sorted(set(looked_up))}"


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [PIL.Image.fromarray((rng.random((8, 8)) * 255).astype("uint8")) for _ in range(n)]


def image_dataset(n=12, seed=0):
    return datasets.Dataset.from_dict({"image": images(n, seed), "label": list(range(n))}).cast_column(
        "image", datasets.Image()
    )


def data_args(tmp_path, *argv):
    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args([*argv, "--cache_dir", str(tmp_path / "ds-cache")])


def test_image_dataset_pushed_then_loaded_by_id(hub, tmp_path):
    image_dataset().push_to_hub("user/tiny-images", token=hub.token)
    files = set(hub.server.repo("user/tiny-images", repo_type="dataset").resolve("main").files)
    assert {"README.md", "data/train-00000-of-00001.parquet"} <= files

    data = load_training_data(data_args(tmp_path, "--dataset", "user/tiny-images"))
    assert (data.kind, data.source, data.name) == ("image", "hub", "user/tiny-images")
    assert len(data.dataset) == 12 and data.sample_shape == (1, 8, 8) and data.num_classes == 12
    for i, image in enumerate(images(12)):
        item = data.dataset[i]
        assert item["label"] == i and item["sample"].shape == (1, 8, 8)
        assert np.allclose(item["sample"][0].numpy(), np.asarray(image) / 127.5 - 1, atol=1e-6)
    # the parquet file came from the server's /datasets/.../resolve/..., and every request it got was one it knows
    downloads = [path for method, path in hub.server.requests if method == "GET" and "/resolve/" in path]
    assert any(p.startswith("/datasets/user/tiny-images/resolve/") and p.endswith(".parquet") for p in downloads)
    assert not hub.server.unhandled


def test_vector_dataset_by_id(hub, tmp_path):
    x = np.random.default_rng(0).normal(size=(20, 2)).astype("float32")
    datasets.Dataset.from_dict({"x": x.tolist()}).push_to_hub("user/points", token=hub.token)
    data = load_training_data(data_args(tmp_path, "--dataset", "user/points"))
    assert data.kind == "vector" and data.sample_shape == (2,) and len(data.dataset) == 20
    assert data.source == "hub" and data.num_classes is None
    assert np.array_equal(np.stack([data.dataset[i]["sample"].numpy() for i in range(20)]), x)
    assert not hub.server.unhandled


def test_the_trainer_trains_from_a_hub_dataset_id(hub, tmp_path):
    image_dataset().push_to_hub("user/tiny-images", token=hub.token)
    result = train(parse_args([
        "--method", "flow-matching", "--dataset", "user/tiny-images", "--output_dir", str(tmp_path / "run"),
        "--max_train_steps", "3", "--train_batch_size", "4", "--block_out_channels", "8,16", "--logger", "none",
        "--num_sample_images", "4", "--num_inference_steps", "2", "--checkpointing_steps", "3",
        "--save_images_steps", "3",
    ]))
    assert result.global_step == 3
    assert (result.output_dir / "model_index.json").is_file()
    assert json.loads((result.output_dir / "metrics.json").read_text())["dataset"] == "user/tiny-images"
    # without --cache_dir, `datasets` prepared it in its default cache, which the hub fixture made this test's own
    assert list((tmp_path / "datasets-cache").glob("user___tiny-images/*/*/*/dataset_info.json"))
    assert not hub.server.unhandled


def test_dataset_config_name_picks_a_config(hub, tmp_path):
    image_dataset(12).push_to_hub("user/multi", token=hub.token)
    image_dataset(4, seed=1).push_to_hub("user/multi", config_name="small", token=hub.token)
    files = set(hub.server.repo("user/multi", repo_type="dataset").resolve("main").files)
    assert {"data/train-00000-of-00001.parquet", "small/train-00000-of-00001.parquet"} <= files

    small = load_training_data(data_args(tmp_path, "--dataset", "user/multi", "--dataset_config_name", "small"))
    assert len(small.dataset) == 4
    default = load_training_data(data_args(tmp_path, "--dataset", "user/multi"))
    assert len(default.dataset) == 12
    with pytest.raises(DataError, match="could not load the Hub dataset 'user/multi'.*nope.*small"):
        load_training_data(data_args(tmp_path, "--dataset", "user/multi", "--dataset_config_name", "nope"))
    assert not hub.server.unhandled


def test_missing_and_private_dataset_ids_are_data_errors(hub, tmp_path, monkeypatch):
    with pytest.raises(DataError, match="nor a Hub dataset this account can read"):
        load_training_data(data_args(tmp_path, "--dataset", "user/no-such-data"))
    image_dataset(4).push_to_hub("user/secret", token=hub.token, private=True)
    with pytest.raises(DataError, match="nor a Hub dataset this account can read"):
        load_training_data(data_args(tmp_path, "--dataset", "user/secret"))
    monkeypatch.setenv("HF_TOKEN", hub.token)  # the owner's token: readable
    assert len(load_training_data(data_args(tmp_path, "--dataset", "user/secret"))) == 4
    assert not hub.server.unhandled


def test_point_clients_at_points_datasets_for_one_test_only(hub, tmp_path):
    url = "http://127.0.0.1:9"
    before = (datasets.config.HF_ENDPOINT, datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_CACHE)
    assert before[0] == hub.url and before[1] is False and before[2] == tmp_path / "datasets-cache"
    fs_before, cache_before = HfFileSystem(), HfFileSystem._cache
    with pytest.MonkeyPatch.context() as mp:
        point_clients_at(mp, url, str(tmp_path / "other" / "hub-cache"))
        assert datasets.config.HF_ENDPOINT == url
        assert datasets.config.HUB_DATASETS_URL.startswith(url + "/datasets/{repo_id}/resolve/")
        assert datasets.config.HF_DATASETS_CACHE == tmp_path / "other" / "datasets-cache"
        fs = HfFileSystem(endpoint=datasets.config.HF_ENDPOINT)
        assert fs.endpoint == url and fs is not fs_before
    after = (datasets.config.HF_ENDPOINT, datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_CACHE)
    assert after == before
    assert HfFileSystem._cache is cache_before and HfFileSystem() is fs_before
    assert fs not in HfFileSystem._cache.values()
