"""Secrets stay secret (issue 23): a Hub token given to the trainer (``--hub_token``) or in the environment
(``HF_TOKEN``) reaches no file the run writes, no printed or logged line and no uploaded file; ``genzoo push`` uploads
no tracker logs unless asked, refuses a file holding the token it uses (naming the file), and refuses a symlink that
leads outside the folder -- each before any request to the Hub."""

import logging
import os
from pathlib import Path

import pytest
from helpers import copy_tree

from genzoo.cli import main
from genzoo.files import OutsideFolderError
from genzoo.hub import files_to_upload, push_folder, push_space
from genzoo.secrets import (
    MASK,
    SecretInFileError,
    find_secret,
    redact,
    redact_argv,
    redact_logs,
    secret_values,
    secrets_in_play,
)
from genzoo.testing import tiny_args
from genzoo.training import parse_args, train

pytestmark = pytest.mark.slow

TOKEN = "hf_test_token"  # the `hub` fixture's token for user "user"


def tb_args(output_dir, *extra):
    """Two steps of the smallest flow-matching model, logged to TensorBoard in <output_dir>/tb."""
    return tiny_args("flow-matching", "moons", output_dir, "--max_train_steps", "2", "--checkpointing_steps", "2",
                     "--save_images_steps", "2", "--num_sample_images", "2", "--logger", "tensorboard",
                     "--logging_dir", "tb", *extra)


def files_holding(folder: Path, secret: str) -> list[str]:
    """Every file under ``folder`` (hidden and binary ones too) whose bytes contain ``secret``."""
    found = []
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            if secret.encode() in path.read_bytes():
                found.append(str(path.relative_to(folder)))
    return found


def uploaded(hub, repo_id: str, repo_type: str = "model") -> dict[str, bytes]:
    commit = hub.server.repo(repo_id, repo_type).resolve("main")
    return {path: blob.data for path, blob in commit.files.items()}


def tracker_files(folder: Path) -> list[Path]:
    return [p for p in (folder / "tb").rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def tb_run(tmp_path_factory):
    """A finished run logged to TensorBoard in tb/, trained with ``--hub_token`` (not pushed)."""
    folder = tmp_path_factory.mktemp("secrets") / "run"
    train(parse_args(tb_args(folder, "--hub_token", TOKEN)))
    return folder


@pytest.fixture
def run_copy(tb_run, tmp_path):
    return copy_tree(tb_run, tmp_path / "run")


@pytest.mark.parametrize("given", ["--hub_token", "HF_TOKEN"])
def test_a_pushed_run_writes_prints_logs_and_uploads_the_token_nowhere(given, hub, tmp_path, monkeypatch, capsys,
                                                                      caplog):
    caplog.set_level(logging.INFO)
    folder = tmp_path / "run"
    extra = ["--push_to_hub", "--hub_model_id", "user/run"]
    if given == "HF_TOKEN":
        monkeypatch.setenv("HF_TOKEN", hub.token)
    else:
        extra += ["--hub_token", hub.token]
    train(parse_args(tb_args(folder, *extra)))
    assert any(p.name == "hparams.yml" for p in tracker_files(folder))  # the tracker wrote its config...
    assert any(p.name.startswith("events.out.tfevents.") for p in tracker_files(folder))
    hparams = next(p for p in tracker_files(folder) if p.name == "hparams.yml").read_text()
    assert "method: flow-matching" in hparams and "hub_token" not in hparams  # ...the recipe, not the namespace
    assert files_holding(folder, hub.token) == []
    out, err = capsys.readouterr()
    assert hub.token not in out + err + caplog.text
    assert "pushed to the Hub as user/run" in caplog.text
    files = uploaded(hub, "user/run")
    assert {"model_index.json", "recipe.yaml", "README.md"} <= set(files)
    assert not any(path.startswith("tb/") or "tfevents" in path for path in files)
    assert not any(hub.token.encode() in data for data in files.values())
    assert [auth for method, path, auth in hub.server.authorizations if path.endswith("/commit/main")] == [
        f"Bearer {hub.token}"]  # and the token was used


def test_the_trainers_push_refuses_a_file_holding_its_token(hub, tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "notes.txt").write_text(f"my token: {hub.token}\n")  # a file of the user's, kept beside the run
    code = main(["train", *tb_args(folder, "--push_to_hub", "--hub_model_id", "user/run", "--hub_token", hub.token)])
    err = capsys.readouterr().err
    last = err.splitlines()[-1]  # after the progress bar
    assert code == 2 and last.startswith("genzoo: error: ") and "notes.txt holds the Hub token this push uses" in last
    assert hub.token not in err
    assert hub.server.requests == []  # nothing was uploaded
    assert (folder / "model_index.json").is_file()  # the run itself was saved


def test_the_tracker_config_is_the_recipe_and_the_run_leaves_no_token_behind(tb_run):
    assert files_holding(tb_run, TOKEN) == []
    assert (tb_run / "recipe.yaml").is_file() and "hub_token" not in (tb_run / "recipe.yaml").read_text()


def test_push_refuses_a_file_holding_its_token_naming_the_file(hub, run_copy, capsys):
    (run_copy / "notes.txt").write_bytes(b"x" * 3_000_000 + TOKEN.encode() + b"\n")  # past the first read chunk
    with pytest.raises(SecretInFileError, match=r"notes\.txt holds the Hub token this push uses"):
        push_folder(run_copy, "user/run", token=hub.token)
    code = main(["push", str(run_copy), "user/run", "--token", hub.token])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("genzoo: error: ") and len(err.splitlines()) == 1
    assert "notes.txt" in err and "nothing was uploaded" in err and hub.token not in err
    assert hub.server.requests == []  # refused before any request: no repo, no commit
    # the same token in a file that is not uploaded (the tracker folder) is no reason to refuse
    (run_copy / "notes.txt").unlink()
    (run_copy / "tb" / "notes.txt").write_text(TOKEN)
    push_folder(run_copy, "user/run", token=hub.token)
    assert not any(path.startswith("tb/") for path in uploaded(hub, "user/run"))


def test_push_uses_and_guards_the_token_huggingface_hub_would_use(hub, run_copy, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", hub.token)
    (run_copy / "config.txt").write_text(f"token = {hub.token}\n")
    with pytest.raises(SecretInFileError, match=r"config\.txt holds the Hub token this push uses"):
        push_folder(run_copy, "user/run")
    assert hub.server.requests == []
    (run_copy / "config.txt").unlink()
    push_folder(run_copy, "user/run")  # no token given: HF_TOKEN's
    assert [auth for method, path, auth in hub.server.authorizations if path.endswith("/commit/main")] == [
        f"Bearer {hub.token}"]


def test_push_refuses_a_file_holding_another_secret_in_play(hub, run_copy, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef0123456789abcdef01234567")
    (run_copy / "wandb-settings.txt").write_text("key 0123456789abcdef0123456789abcdef01234567")
    with pytest.raises(SecretInFileError, match=r"wandb-settings\.txt holds the value of \$WANDB_API_KEY"):
        push_folder(run_copy, "user/run", token=hub.token)
    assert hub.server.requests == []


def test_include_logs_uploads_the_tracker_folder_but_still_refuses_secrets(hub, run_copy, capsys):
    assert any("tfevents" in p.name for p in tracker_files(run_copy))
    default = {p.relative_to(run_copy).parts[0] for p in files_to_upload(run_copy)}
    assert "tb" not in default and "checkpoints" not in default
    assert main(["push", str(run_copy), "user/run", "--token", hub.token, "--include-logs"]) == 0
    files = uploaded(hub, "user/run")
    assert {f"tb/{p.relative_to(run_copy / 'tb').as_posix()}" for p in tracker_files(run_copy)} <= set(files)
    assert not any(path.startswith("checkpoints/") for path in files)
    (run_copy / "tb" / "genzoo" / "leak.txt").write_text(TOKEN)
    commits = len(hub.server.repo("user/run").commits)
    with pytest.raises(SecretInFileError, match=r"tb/genzoo/leak\.txt holds"):
        push_folder(run_copy, "user/run", token=hub.token, include_logs=True)
    assert len(hub.server.repo("user/run").commits) == commits


def test_event_files_and_wandb_folders_stay_local_wherever_they_are(tmp_path, run_copy):
    (run_copy / "unet" / "events.out.tfevents.1.host").write_bytes(b"events")
    (run_copy / "extra" / "wandb" / "run-1").mkdir(parents=True)
    (run_copy / "extra" / "wandb" / "run-1" / "config.yaml").write_text("a: 1\n")
    (run_copy / ".cache" / "huggingface").mkdir(parents=True)
    (run_copy / ".cache" / "huggingface" / "x.lock").write_text("")
    names = {p.relative_to(run_copy).as_posix() for p in files_to_upload(run_copy)}
    assert "model_index.json" in names and "recipe.yaml" in names
    assert not any("tfevents" in n or "wandb" in n or n.startswith((".cache", "tb/")) for n in names)
    with_logs = {p.relative_to(run_copy).as_posix() for p in files_to_upload(run_copy, include_logs=True)}
    assert {"unet/events.out.tfevents.1.host", "extra/wandb/run-1/config.yaml"} <= with_logs


def test_a_symlink_leading_outside_is_refused_by_push_and_the_space_copy(hub, run_copy, tmp_path, capsys):
    outside = tmp_path / "home" / ".cache" / "huggingface" / "token"
    outside.parent.mkdir(parents=True)
    outside.write_text(hub.token)
    (run_copy / "notes.txt").symlink_to(outside)
    with pytest.raises(OutsideFolderError, match=r"notes\.txt leads outside .*token"):
        files_to_upload(run_copy)
    code = main(["push", str(run_copy), "user/run", "--token", hub.token])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("genzoo: error: ") and "notes.txt" in err and len(err.splitlines()) == 1
    assert hub.server.requests == []
    pytest.importorskip("gradio")
    from genzoo.demo import write_space

    with pytest.raises(OutsideFolderError, match=r"notes\.txt"):
        write_space(str(run_copy), tmp_path / "space", requirement="genzoo[demo] @ git+https://example/genzoo")
    assert not (tmp_path / "space" / "model" / "notes.txt").exists()
    # a Space folder with such a link is refused too
    space = tmp_path / "space2"
    space.mkdir()
    (space / "app.py").write_text("print('hi')\n")
    (space / "README.md").write_text("---\nsdk: gradio\n---\n")
    (space / "secret.txt").symlink_to(outside)
    with pytest.raises(OutsideFolderError, match=r"secret\.txt"):
        push_space(space, "user/space", token=hub.token)
    (space / "secret.txt").unlink()
    (space / "app.py").write_text(f"TOKEN = {hub.token!r}\n")
    with pytest.raises(SecretInFileError, match=r"app\.py holds"):
        push_space(space, "user/space", token=hub.token)
    assert hub.server.requests == []
    (space / "app.py").write_text("print('hi')\n")
    push_space(space, "user/space", token=hub.token)
    assert set(uploaded(hub, "user/space", "space")) >= {"app.py", "README.md"}


def test_a_token_split_across_read_chunks_is_found(tmp_path):
    secret = "hf_abcdefghijklmnop"
    path = tmp_path / "file.bin"
    for offset in range(0, 24):
        path.write_bytes(b"\0" * offset + secret.encode() + b"\0" * 5)
        assert find_secret(path, {secret: "it"}, chunk_size=7) == "it", offset
    path.write_bytes(b"\0" * 100)
    assert find_secret(path, {secret: "it"}, chunk_size=7) is None


def test_secret_values_come_from_options_environment_and_the_stored_login(monkeypatch, tmp_path):
    from huggingface_hub import constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_API_TOKEN", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "stored_tokens"))
    assert secret_values() == set()
    (tmp_path / "token").write_text("hf_stored_login_token\n")
    monkeypatch.setenv("WANDB_API_KEY", "wandb-key-0123456789")
    monkeypatch.setenv("HF_TOKEN", "short")  # too short to be a token: not hidden everywhere
    found = secrets_in_play({"hub_token": "hf_from_the_option"})
    assert found == {"hf_from_the_option": "the value of --hub_token",
                     "wandb-key-0123456789": "the value of $WANDB_API_KEY",
                     "hf_stored_login_token": "the Hugging Face token stored by `hf auth login`"}
    assert redact({"a": "x hf_from_the_option y", "b": ["wandb-key-0123456789"], "n": 3}, found) == {
        "a": f"x {MASK} y", "b": [MASK], "n": 3}


def test_redact_logs_hides_secrets_in_every_logged_line(caplog, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "wandb-key-for-the-log-test")
    caplog.set_level(logging.INFO)
    redact_logs({"hub_token": "hf_log_test_token"})
    logging.getLogger("genzoo.training").info("token %s", "hf_log_test_token")
    logging.getLogger("huggingface_hub.some_module").warning("key=wandb-key-for-the-log-test")
    try:
        raise ValueError("bad token hf_log_test_token")
    except ValueError:
        logging.getLogger("accelerate.tracking").exception("failed")
    logging.getLogger("huggingface_hub").warning("token %s", "hf_log_test_token")  # a library with its own handler
    printed = capsys.readouterr()
    for text in (caplog.text, printed.out, printed.err):
        assert "hf_log_test_token" not in text and "wandb-key-for-the-log-test" not in text
    assert [r.getMessage() for r in caplog.records] == [f"token {MASK}", f"key={MASK}", "failed", f"token {MASK}"]
    assert f"ValueError: bad token {MASK}" in caplog.text


def test_a_printed_command_line_hides_secret_options(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "wandb-key-in-a-path-0123")
    argv = ["--hub_token", "hf_abcdefghijkl", "--hub-token=hf_abcdefghijkl", "--token", "x", "--seed", "0",
            "--output_dir", "runs/wandb-key-in-a-path-0123"]
    assert redact_argv(argv) == ["--hub_token", MASK, f"--hub-token={MASK}", "--token", MASK, "--seed", "0",
                                 "--output_dir", f"runs/{MASK}"]
