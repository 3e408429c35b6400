"""The Hub test double (tests/hub_server.py) behind the ``hub`` fixture, driven through huggingface_hub's public API and
Diffusers, the way genzoo's users reach the real Hub."""

import hashlib
import os
import shutil
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import (
    HfApi,
    constants,
    create_branch,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    list_repo_files,
    model_info,
    snapshot_download,
)
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from hub_server import HubServer, git_blob_sha1

# huggingface_hub's own LFS upload passes a file object as `data=`, which httpx2 deprecates: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")

WEIGHTS = os.urandom(2 * 1024 * 1024)  # 2 MB of binary, named *.safetensors: goes through LFS


def make_folder(root: Path, config: str = '{"hidden": 16}') -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(config)
    (root / "weights").mkdir(exist_ok=True)
    (root / "weights" / "model.safetensors").write_bytes(WEIGHTS)
    return root


def local_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def api(hub):
    return HfApi(endpoint=hub.url, token=hub.token)


@pytest.fixture
def uploaded(hub, api, tmp_path):
    """user/demo with config.json and weights/model.safetensors (LFS); returns the commit."""
    api.create_repo("user/demo")
    return api.upload_folder(repo_id="user/demo", folder_path=make_folder(tmp_path / "demo"))


def test_server_starts_on_a_free_port_and_stops():
    with HubServer() as server:
        assert server.url.startswith("http://127.0.0.1:") and not server.url.endswith(":0")
        response = httpx2.get(server.url + "/api/not-an-endpoint")
        assert response.status_code == 404 and "no endpoint" in response.json()["error"]
        assert server.unhandled == [("GET", "/api/not-an-endpoint")] == server.requests
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(server.url + "/api/whoami-v2")


def test_create_public_and_private_repos(hub, api):
    url = api.create_repo("user/public")
    assert url.repo_id == "user/public" and url.startswith(hub.url)
    api.create_repo("user/secret", private=True)
    assert api.repo_info("user/public").private is False
    assert api.repo_info("user/secret").private is True
    assert api.whoami()["name"] == "user"

    with pytest.raises(HfHubHTTPError) as error:
        api.create_repo("user/public")
    assert error.value.response.status_code == 409
    api.create_repo("user/public", exist_ok=True)

    with pytest.raises(HfHubHTTPError) as error:  # a valid token, but not the owner of the namespace
        HfApi(endpoint=hub.url, token="hf_other_token").create_repo("user/theirs")
    assert error.value.response.status_code == 403

    # A new repo holds the Hub's initial commit with its .gitattributes, as on huggingface.co.
    assert list_repo_files("user/public") == [".gitattributes"]


def test_upload_folder_sends_big_binaries_through_lfs(hub, api, tmp_path):
    api.create_repo("user/demo")
    commit = api.upload_folder(repo_id="user/demo", folder_path=make_folder(tmp_path / "demo"))

    assert list_repo_files("user/demo") == [".gitattributes", "config.json", "weights/model.safetensors"]
    methods = [(method, path.split("/")[-1]) for method, path in hub.server.requests]
    assert ("POST", "batch") in methods and ("PUT", methods[methods.index(("POST", "batch")) + 1][1]) in methods
    stored = hub.server.repo("user/demo").commits[commit.oid].files
    assert stored["weights/model.safetensors"].lfs and not stored["config.json"].lfs
    assert hub.server.file("user/demo", "weights/model.safetensors") == WEIGHTS

    weights, config = api.get_paths_info("user/demo", ["weights/model.safetensors", "config.json", "nope"])
    assert weights.lfs.sha256 == hashlib.sha256(WEIGHTS).hexdigest() and weights.size == len(WEIGHTS)
    assert config.lfs is None and config.blob_id == git_blob_sha1(b'{"hidden": 16}')
    folder = [entry.path for entry in api.list_repo_tree("user/demo")]
    assert folder == ["weights", ".gitattributes", "config.json"]  # not recursive: folders first, like the Hub


def test_hf_hub_download_then_from_the_cache(hub, uploaded):
    path = hf_hub_download("user/demo", "weights/model.safetensors")
    assert Path(path).read_bytes() == WEIGHTS
    assert Path(path).is_relative_to(hub.cache_dir)

    downloads = lambda: [r for r in hub.server.requests if r[0] == "GET" and "/resolve/" in r[1]]  # noqa: E731
    before = len(downloads())
    assert hf_hub_download("user/demo", "weights/model.safetensors") == path
    assert len(downloads()) == before  # second time: a HEAD for the metadata, no download

    shutil.rmtree(hub.cache_dir)  # clearing the cache
    assert Path(hf_hub_download("user/demo", "weights/model.safetensors")).read_bytes() == WEIGHTS
    assert len(downloads()) == before + 1


def test_snapshot_download_of_an_older_revision(hub, api, tmp_path, uploaded):
    folder = make_folder(tmp_path / "v2", config='{"hidden": 32}')
    second = api.upload_folder(repo_id="user/demo", folder_path=folder, commit_message="Bigger")
    assert second.oid != uploaded.oid

    old = Path(snapshot_download("user/demo", revision=uploaded.oid))
    new = Path(snapshot_download("user/demo"))
    assert (old / "config.json").read_text() == '{"hidden": 16}'
    assert (new / "config.json").read_text() == '{"hidden": 32}'
    assert (old / "weights" / "model.safetensors").read_bytes() == WEIGHTS
    assert new.name == second.oid == model_info("user/demo").sha
    titles = [commit.title for commit in api.list_repo_commits("user/demo")]
    assert titles == ["Bigger", "Upload folder using huggingface_hub", "initial commit"]


def test_wrong_token_is_refused_on_upload(hub, api, tmp_path):
    api.create_repo("user/demo")
    with pytest.raises(HfHubHTTPError) as error:
        HfApi(endpoint=hub.url, token="hf_not_a_token").upload_folder(
            repo_id="user/demo", folder_path=make_folder(tmp_path / "demo")
        )
    assert error.value.response.status_code == 401
    assert "Invalid credentials in Authorization header" in str(error.value)
    assert not isinstance(error.value, RepositoryNotFoundError)

    with pytest.raises(HfHubHTTPError) as error:  # someone else's valid token
        HfApi(endpoint=hub.url, token="hf_other_token").upload_file(
            repo_id="user/demo", path_or_fileobj=b"x", path_in_repo="x.txt"
        )
    assert error.value.response.status_code == 403
    assert list_repo_files("user/demo") == [".gitattributes"]


def test_private_repo_is_not_found_without_its_owner_token(hub, api):
    api.create_repo("user/secret", private=True)
    api.upload_file(repo_id="user/secret", path_or_fileobj=b"classified", path_in_repo="notes.txt")

    with pytest.raises(RepositoryNotFoundError):
        model_info("user/secret")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("user/secret", "notes.txt")
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("user/secret", token="hf_other_token")
    with pytest.raises(RepositoryNotFoundError):  # and a repo that does not exist looks the same
        hf_hub_download("user/nothing-here", "notes.txt")

    assert Path(hf_hub_download("user/secret", "notes.txt", token=hub.token)).read_bytes() == b"classified"
    assert model_info("user/secret", token=hub.token).private


def test_repo_info_sha_is_the_uploaded_commit(hub, api, uploaded):
    assert api.repo_info("user/demo").sha == uploaded.oid
    info = api.model_info("user/demo", files_metadata=True)
    siblings = {s.rfilename: s for s in info.siblings}
    assert sorted(siblings) == [".gitattributes", "config.json", "weights/model.safetensors"]
    assert siblings["weights/model.safetensors"].lfs.sha256 == hashlib.sha256(WEIGHTS).hexdigest()

    one_file = api.upload_file(repo_id="user/demo", path_or_fileobj=b"# Demo\n", path_in_repo="README.md")
    assert api.repo_info("user/demo").sha == one_file.oid
    assert api.repo_info("user/demo", revision=uploaded.oid).sha == uploaded.oid


def test_resolve_headers(hub, uploaded):
    config = get_hf_file_metadata(hf_hub_url("user/demo", "config.json"), token=hub.token)
    assert config.commit_hash == uploaded.oid
    assert config.etag == git_blob_sha1(b'{"hidden": 16}') and config.size == len(b'{"hidden": 16}')

    weights = get_hf_file_metadata(hf_hub_url("user/demo", "weights/model.safetensors"))
    assert weights.etag == hashlib.sha256(WEIGHTS).hexdigest() and weights.size == len(WEIGHTS)

    head = httpx2.head(f"{hub.url}/user/demo/resolve/main/weights/model.safetensors")
    assert head.headers["X-Repo-Commit"] == uploaded.oid
    assert head.headers["X-Linked-Etag"] == head.headers["ETag"] == f'"{hashlib.sha256(WEIGHTS).hexdigest()}"'
    assert head.headers["X-Linked-Size"] == head.headers["Content-Length"] == str(len(WEIGHTS))
    url = f"{hub.url}/user/demo/resolve/{uploaded.oid}/weights/model.safetensors"
    part = httpx2.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == WEIGHTS[10:20]

    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download("user/demo", "missing.txt")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("user/demo", "config.json", revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        model_info("user/demo", revision="0" * 40)


def test_offline_mode_serves_the_cache(hub, uploaded, monkeypatch):
    path = hf_hub_download("user/demo", "config.json")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    before = len(hub.server.requests)
    assert hf_hub_download("user/demo", "config.json") == path
    assert Path(snapshot_download("user/demo", allow_patterns=["config.json"])) == Path(path).parent
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download("user/demo", "weights/model.safetensors")
    assert len(hub.server.requests) == before  # offline: not one request


def test_branches_tags_and_deletions(hub, api, uploaded):
    create_branch("user/demo", branch="dev", token=hub.token)
    api.upload_file(repo_id="user/demo", path_or_fileobj=b"dev only", path_in_repo="dev.txt", revision="dev")
    api.delete_file("config.json", repo_id="user/demo", revision="dev")
    api.create_tag("user/demo", tag="v1", revision=uploaded.oid)

    refs = api.list_repo_refs("user/demo")
    assert sorted(b.name for b in refs.branches) == ["dev", "main"] and [t.name for t in refs.tags] == ["v1"]
    assert list_repo_files("user/demo", revision="dev") == [".gitattributes", "dev.txt", "weights/model.safetensors"]
    assert "dev.txt" not in list_repo_files("user/demo")
    assert Path(hf_hub_download("user/demo", "config.json", revision="v1")).read_text() == '{"hidden": 16}'
    with pytest.raises(RevisionNotFoundError):  # commits go to existing branches only
        api.upload_file(repo_id="user/demo", path_or_fileobj=b"x", path_in_repo="x.txt", revision="nope")


def test_repos_seeded_directly_on_the_server(hub):
    sha = hub.server.commit("user/seeded", {"notes.txt": b"hi", "raw.dat": b"\0binary"}, message="Seed")
    assert model_info("user/seeded").sha == sha
    assert Path(hf_hub_download("user/seeded", "notes.txt")).read_bytes() == b"hi"
    assert hub.server.repo("user/seeded").commits[sha].files["raw.dat"].lfs  # binary content: LFS, as preupload says
    hub.server.commit("user/seeded", {"notes.txt": None})
    assert list_repo_files("user/seeded") == [".gitattributes", "raw.dat"]


def test_dataset_repos(hub, api):
    api.create_repo("user/points", repo_type="dataset")
    api.upload_file(repo_id="user/points", repo_type="dataset", path_or_fileobj=b"x,y\n1,2\n", path_in_repo="a.csv")
    assert api.list_repo_files("user/points", repo_type="dataset") == [".gitattributes", "a.csv"]
    assert Path(hf_hub_download("user/points", "a.csv", repo_type="dataset")).read_bytes() == b"x,y\n1,2\n"
    assert api.dataset_info("user/points").sha == api.list_repo_commits("user/points", repo_type="dataset")[0].commit_id
    with pytest.raises(RepositoryNotFoundError):  # a dataset is not a model
        model_info("user/points")


def test_genzoo_pipeline_round_trips_through_the_hub(hub, api, tmp_path):
    import diffusers

    import genzoo

    local = tmp_path / "fm"
    genzoo.FlowMatchingPipeline(
        unet=genzoo.MLPDenoiser(hidden_dim=16), scheduler=genzoo.FlowMatchEulerScheduler()
    ).save_pretrained(local)
    api.create_repo("user/fm")
    api.upload_folder(repo_id="user/fm", folder_path=local)

    snapshot = Path(snapshot_download("user/fm"))
    assert local_files(snapshot) == sorted([".gitattributes", *local_files(local)])
    assert (snapshot / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == (
        local / "unet" / "diffusion_pytorch_model.safetensors"
    ).read_bytes()

    shutil.rmtree(hub.cache_dir)  # Diffusers on its own, from an empty cache
    pipeline = diffusers.DiffusionPipeline.from_pretrained("user/fm", trust_remote_code=True)
    assert type(pipeline) is genzoo.FlowMatchingPipeline
    assert isinstance(pipeline.unet, genzoo.MLPDenoiser) and pipeline.unet.config.hidden_dim == 16
    assert isinstance(pipeline.scheduler, genzoo.FlowMatchEulerScheduler)
    assert hub.server.unhandled == []
