"""The demo and the Space in front of a hostile visitor (issue 23): the model box is no file-system oracle and no
proxy for the operator's Hub token, every number a request carries is bounded on the server, a request ends within
its time bound, a one-pass model is not stuck behind a long request, a public host says what it exposes, and
`genzoo space` writes every value through a serialiser. The last part feeds arbitrary values to both."""

import ast
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from helpers import ROOT, free_port

import genzoo
from genzoo.cli import main
from genzoo.checks import describe
from genzoo.files import OutsideFolderError

gr = pytest.importorskip("gradio")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from genzoo.demo import (  # noqa: E402
    MAX_GUIDANCE,
    MAX_PROMPT_CHARS,
    MAX_SAMPLE_STEPS,
    MAX_SAMPLES,
    MAX_SEED,
    MAX_STEPS,
    OWN_SOLVER,
    DemoBackend,
    Model,
    RequestTimeout,
    announce,
    gradio_handlers,
    launch,
    resident_bytes,
    write_space,
)

ZOO = ROOT / "pipelines"
STARTED = [str(ZOO / "gan-digits"), str(ZOO / "flow-matching-digits")]


def copy_pipeline(name: str, to: Path) -> Path:
    shutil.copytree(ZOO / name, to, ignore=shutil.ignore_patterns("checkpoints", "samples", "logs"))
    return to


def one_line(message: str) -> bool:
    return bool(message) and "\n" not in message


# --------------------------------------------------------------------------------------------------- the model box
def test_the_model_box_serves_the_started_models_only_and_answers_everything_else_alike(hub, monkeypatch, tmp_path):
    """Finding 1 and 2: a name that is not a started model gets one message, the same for a secret folder, a missing
    one, a file, a real pipeline outside the list and a Hub id; nothing is read and the Hub is not asked (with the
    operator's HF_TOKEN set)."""
    monkeypatch.setenv("HF_TOKEN", hub.token)
    genzoo.load_pipeline(ZOO / "vae-digits").push_to_hub("user/vae-digits", token=hub.token)
    hub.server.requests.clear()
    backend = DemoBackend(STARTED)
    assert list(backend.models) == ["gan-digits", "flow-matching-digits"]
    assert backend.models["gan-digits"].source == os.path.realpath(STARTED[0])  # resolved once, at start
    outside = copy_pipeline("vae-digits", tmp_path / "elsewhere")
    typed = ["/root/.ssh", "/no/such/folder", "/etc/passwd", str(outside), str(ZOO / "vae-digits"),
             "user/vae-digits", "user/no-such-model", "../../../etc", "~", "."]
    messages = []
    for name in typed:
        with pytest.raises(ValueError) as caught:
            backend.describe(name)
        messages.append(str(caught.value).replace(describe(name, 40), "<typed>"))
    assert len(set(messages)) == 1, messages
    assert messages[0] == ("model <typed> is not served by this demo; choose one of: gan-digits, "
                           "flow-matching-digits.")
    handlers = gradio_handlers(backend)
    with pytest.raises(gr.Error) as caught:  # the page's and the API's answer
        handlers["generate"]("/root/.ssh", 4, 0, False, None, OWN_SOLVER, None, "", "", "")
    assert caught.value.message == "model '/root/.ssh' is not served by this demo; choose one of: gan-digits, " \
        "flow-matching-digits."
    assert hub.server.requests == []  # the Hub id typed was not even looked up
    assert backend.cached() == []
    # the started models work by name
    image, seed, what = backend.generate("gan-digits", 4, 3)
    assert isinstance(image, PIL.Image.Image) and seed == 3 and what.startswith("GANPipeline: 4 samples")


def test_any_model_fetches_visitors_hub_ids_without_the_operators_token(hub, monkeypatch):
    """Finding 1 with --allow-any-model: a visitor's Hub id is fetched anonymously (a private repo of the operator's
    stays out of reach), unless the operator shares the token; the Hub is asked for the size first."""
    monkeypatch.setenv("HF_TOKEN", hub.token)  # the operator is logged in
    gan = genzoo.load_pipeline(ZOO / "gan-digits")
    gan.push_to_hub("user/gan-digits", token=hub.token)
    gan.push_to_hub("user/private-gan", token=hub.token, private=True)
    hub.server.authorizations.clear()
    backend = DemoBackend(STARTED[1:], allow_any_model=True)
    model = backend.model_for("user/gan-digits")
    sent = [auth for method, path, auth in hub.server.authorizations if "gan-digits" in path]
    assert sent and set(sent) == {None}  # no request for the visitor's model carried the operator's token
    paths = [path for _, path, _ in hub.server.authorizations]
    assert paths[0].startswith("/api/models/user/gan-digits")  # the size, before any file
    samples, _ = model.sample(num_samples=2, seed=0)
    np.testing.assert_array_equal(samples, Model(str(ZOO / "gan-digits")).sample(num_samples=2, seed=0)[0])
    assert not list(Path(hub.cache_dir).glob("models--user--gan-digits"))  # downloaded aside, then removed
    with pytest.raises(ValueError, match="user/private-gan was not found, or it is private or gated .this demo "
                                         "fetches visitors' models without a token"):
        backend.model_for("user/private-gan")
    assert backend.model_for("user/gan-digits") is model  # kept, by its resolved revision
    # the operator may opt in: then the token goes along, and the private repo loads
    hub.server.authorizations.clear()
    sharing = DemoBackend(STARTED[1:], allow_any_model=True, share_token_with_visitors=True)
    sharing.model_for("user/private-gan")
    assert {auth for _, path, auth in hub.server.authorizations} == {f"Bearer {hub.token}"}


def test_any_model_refuses_a_hub_model_above_the_size_bound_before_downloading(hub):
    genzoo.load_pipeline(ZOO / "gan-digits").push_to_hub("user/gan-digits", token=hub.token)
    hub.server.requests.clear()
    backend = DemoBackend(STARTED[:1], allow_any_model=True, max_model_bytes=10_000)
    with pytest.raises(ValueError) as caught:
        backend.model_for("user/gan-digits")
    assert "more than the 10000 bytes this demo downloads for a model typed into the box" in str(caught.value)
    assert one_line(str(caught.value))
    assert [path for _, path in hub.server.requests if "/resolve/" in path] == []  # no file was downloaded


def test_any_model_keeps_typed_models_within_a_byte_bound(tmp_path):
    gan_bytes = resident_bytes(genzoo.load_pipeline(ZOO / "gan-digits"))
    vae_bytes = resident_bytes(genzoo.load_pipeline(ZOO / "vae-digits"))
    bound = max(gan_bytes, vae_bytes) + 1  # room for one of them, not both
    assert gan_bytes + vae_bytes > bound
    backend = DemoBackend(STARTED[1:], allow_any_model=True, max_cache_bytes=bound)
    gan = backend.model_for(str(ZOO / "gan-digits"))
    assert backend.cached() == [str(ZOO / "gan-digits")]
    assert backend.model_for(str(ZOO / "gan-digits") + "/") is gan  # one entry per resolved folder
    backend.model_for(str(ZOO / "vae-digits"))
    assert backend.cached() == [str(ZOO / "vae-digits")]  # the least recently used went
    assert "flow-matching-digits" in backend.models  # the started model is pinned, outside the bound
    small = DemoBackend(STARTED[1:], allow_any_model=True, max_cache_bytes=1000)
    with pytest.raises(ValueError, match=f"takes {gan_bytes} bytes of weights in memory, more than the 1000 bytes"):
        small.model_for(str(ZOO / "gan-digits"))
    assert small.cached() == []


def test_any_model_refuses_folders_that_lead_outside_and_answers_non_pipelines_alike(tmp_path):
    """Finding 2 with --allow-any-model: a component folder linked to another place is refused (the loader would
    follow it), as is a linked model_index.json; folders that are not pipelines all get one answer."""
    linked = copy_pipeline("gan-digits", tmp_path / "linked")
    shutil.rmtree(linked / "generator")
    (linked / "generator").symlink_to(ZOO / "gan-digits" / "generator", target_is_directory=True)
    backend = DemoBackend(STARTED[1:], allow_any_model=True)
    with pytest.raises(OutsideFolderError, match="generator leads outside") as caught:
        backend.model_for(str(linked))
    assert str(ZOO / "gan-digits" / "generator") in str(caught.value)
    index = copy_pipeline("gan-digits", tmp_path / "index")
    (index / "model_index.json").unlink()
    (index / "model_index.json").symlink_to(ZOO / "gan-digits" / "model_index.json")
    with pytest.raises(OutsideFolderError, match="model_index.json leads outside"):
        backend.model_for(str(index))
    assert backend.cached() == []
    messages = []
    for name in ("/root/.ssh", "/no/such/folder", "/etc/passwd", str(tmp_path)):
        with pytest.raises(ValueError) as caught:
            backend.model_for(name)
        messages.append(str(caught.value).replace(describe(name), "<typed>"))
    assert set(messages) == {"model <typed> is neither a pipeline folder (one holding model_index.json) nor a Hub "
                             "model id."}


# -------------------------------------------------------------------------------------------------------- bounds
@pytest.mark.parametrize("option, value, message", [
    ("num_samples", 0, f"samples must be a positive integer at most {MAX_SAMPLES} (the demo's bound), got 0."),
    ("num_samples", MAX_SAMPLES + 1, f"samples must be a positive integer at most {MAX_SAMPLES}"),
    ("num_samples", "16", "samples must be a positive integer at most 64 (the demo's bound), got '16' (type str"),
    ("steps", 10**6, f"num_inference_steps must be a positive integer at most {MAX_STEPS} (the demo's bound), got "
                     "1000000."),
    ("steps", 0, "num_inference_steps must be a positive integer"),
    ("num_samples", MAX_SAMPLES, f"samples x sampling steps must be at most {MAX_SAMPLE_STEPS} (the demo's bound), got "
                                 f"{MAX_SAMPLES} x 1000 = {MAX_SAMPLES * 1000}; ask for fewer samples or steps."),
    ("seed", -1, "seed must be a non-negative integer at most 4294967295, got -1."),
    ("seed", MAX_SEED + 1, "seed must be a non-negative integer at most 4294967295, got 4294967296."),
    ("seed", 1.5, "seed must be a non-negative integer"),
    ("guidance_scale", "nan", f"guidance scale must be a number in [0, {MAX_GUIDANCE:g}] (the demo's bound), or "
                              "empty for the model's default, got nan (not finite)."),
    ("guidance_scale", float("inf"), "guidance scale must be a number in [0, 30]"),
    ("guidance_scale", MAX_GUIDANCE + 1, "guidance scale must be a number in [0, 30]"),
    ("guidance_scale", -1.0, "guidance scale must be a number in [0, 30]"),
    ("guidance_scale", "strong", "guidance scale must be a number in [0, 30] (the demo's bound), or empty for the "
                                 "model's default, got 'strong' (type str, not a number)."),
    ("prompt", "x" * (MAX_PROMPT_CHARS + 1), f"prompt must be at most {MAX_PROMPT_CHARS} characters (the demo's "
                                             f"bound), got {MAX_PROMPT_CHARS + 1}."),
    ("negative_prompt", "x" * 10**6, "negative prompt must be at most 300 characters"),
    ("class_label", "x" * 101, "class label must be at most 100 characters"),
    ("solver", "x" * 101, "solver must be at most 100 characters"),
])
def test_every_number_and_text_of_a_request_is_bounded_on_the_server(option, value, message):
    """Finding 3: whatever an API client sends, a request beyond the demo's bounds is refused at once, with a
    one-line message naming the value and the bound."""
    backend = DemoBackend([str(ZOO / "flow-matching-shapes")])
    request = dict(name="flow-matching-shapes", num_samples=2, seed=0, steps=2)
    if option == "num_samples" and value == MAX_SAMPLES:
        request["steps"] = MAX_STEPS  # allowed alone, too costly together
    start = time.monotonic()
    with pytest.raises(ValueError) as caught:
        backend.generate(**{**request, option: value})
    assert time.monotonic() - start < 5  # refused, not run
    assert str(caught.value).startswith(message) and one_line(str(caught.value))


@pytest.mark.parametrize("name", ["ddpm-digits", "flow-matching-digits", "meanflow-digits",
                                  "latent-flow-matching-shapes"])
def test_a_request_stops_at_its_time_bound_for_every_family_with_steps(name):
    model = Model(str(ZOO / name))
    pipe = model.pipe
    with pytest.raises(RequestTimeout, match=r"sampling stopped after 0 of 3 steps: this demo allows at most 0 s per "
                                             r"request; ask for fewer sampling steps or samples\."):
        model.sample(num_samples=2, seed=0, steps=3, max_seconds=0)
    assert "progress_bar" not in pipe.__dict__  # the pipeline's own bar is back
    samples, _ = model.sample(num_samples=2, seed=0, steps=3, max_seconds=60)  # within the bound: as without
    expected, _ = model.sample(num_samples=2, seed=0, steps=3)
    np.testing.assert_array_equal(samples, expected)


def test_one_pass_models_and_the_backends_time_bound():
    gan = Model(str(ZOO / "gan-digits"))  # one pass: nothing to stop, and cheap
    samples, _ = gan.sample(num_samples=MAX_SAMPLES, seed=0, max_seconds=0)
    assert samples.shape[0] == MAX_SAMPLES
    backend = DemoBackend([str(ZOO / "ddpm-digits"), str(ZOO / "flow-matching-digits")], max_seconds_per_request=0.5)
    start = time.monotonic()
    with pytest.raises(RequestTimeout, match="at most 0.5 s per request"):
        backend.generate("ddpm-digits", MAX_SAMPLE_STEPS // MAX_STEPS, 0, steps=MAX_STEPS)  # the longest there is
    assert time.monotonic() - start < 10
    with pytest.raises(ValueError, match="max_seconds_per_request must be a positive number, got 0"):
        DemoBackend(STARTED, max_seconds_per_request=0)
    assert main(["demo", "--max-seconds-per-request", "0"]) == 2
    assert main(["demo", "--share-token-with-visitors"]) == 2


# ------------------------------------------------------------------------------------------------- served in public
@pytest.mark.slow
@pytest.mark.subprocess
def test_a_one_pass_request_is_served_while_a_long_request_runs(request):
    """The queue: two samplings at a time, one per model. A GAN request finishes while a 200-step DDPM request on
    the same server is still sampling (held at its first step until the GAN's picture is back)."""
    from gradio_client import Client

    demo = launch([str(ZOO / "gan-digits"), str(ZOO / "ddpm-digits")], port=free_port(), block=False)
    request.addfinalizer(demo.close)
    started, release = threading.Event(), threading.Event()
    request.addfinalizer(release.set)
    ddpm = demo.genzoo.models["ddpm-digits"].pipe
    own_bar = ddpm.progress_bar

    def held(iterable=None, total=None):
        started.set()
        release.wait(60)
        return own_bar(iterable=iterable, total=total)

    ddpm.progress_bar = held
    client = Client(demo.local_url, verbose=False)
    request.addfinalizer(client.close)
    args = ["ddpm-digits", 4, 0, False, 200, OWN_SOLVER, "", "", "", ""]
    long = client.submit(*args, api_name="/generate")
    assert started.wait(60), "the long request did not start"
    gan = client.submit("gan-digits", 4, 0, False, None, OWN_SOLVER, "", "", "", "", api_name="/generate")
    _, seed, what = gan.result(timeout=60)
    assert what.startswith("GANPipeline: 4 samples") and not long.done()
    release.set()
    _, _, what = long.result(timeout=120)
    assert what.startswith("DDPMPipeline: 4 samples, 200 steps")


def test_a_public_host_prints_what_is_exposed(capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_operator_secret")
    backend = DemoBackend(STARTED)
    assert announce(backend, "127.0.0.1") == "" and announce(backend, "localhost") == ""
    assert capsys.readouterr().out == ""
    text = announce(backend, "0.0.0.0")
    out = capsys.readouterr().out
    assert out == text + "\n" and "hf_operator_secret" not in out
    assert "genzoo demo on 0.0.0.0: whoever can reach this address can use it." in out
    assert "models served: gan-digits, flow-matching-digits" in out
    assert "models typed into the box: off: only the models above" in out
    assert "the operator's Hub token: found; never used for visitors' requests" in out
    assert (f"samples 1..{MAX_SAMPLES}, sampling steps 1..{MAX_STEPS}, samples x steps <= {MAX_SAMPLE_STEPS}, seed "
            f"0..{MAX_SEED}, guidance scale 0..30, prompts up to 300 characters, 60 s") in out
    assert "queue: 2 samplings of more than one step at a time, one per model, one-step requests beside them" in out
    wide = DemoBackend(STARTED, allow_any_model=True, share_token_with_visitors=True, max_model_bytes=5000)
    out = announce(wide, "192.168.1.5")
    assert "ON (--allow-any-model)" in out and "at most 5000 bytes of files" in out
    assert "used for ANY Hub id a visitor types (--share-token-with-visitors)" in out


def test_the_command_line_passes_the_flags_on(monkeypatch):
    import genzoo.demo

    calls = []
    monkeypatch.setattr(genzoo.demo, "launch", lambda sources, **kwargs: calls.append((sources, kwargs)))
    assert main(["demo", "pipelines/gan-digits", "--host", "0.0.0.0", "--allow-any-model", "--max-model-bytes", "5",
                 "--max-cache-bytes", "7", "--max-seconds-per-request", "2.5"]) == 0
    assert calls == [(["pipelines/gan-digits"], dict(host="0.0.0.0", port=None, allow_any_model=True,
                                                     share_token_with_visitors=False, max_model_bytes=5,
                                                     max_cache_bytes=7, max_seconds_per_request=2.5))]
    calls.clear()
    assert main(["demo"]) == 0
    assert calls == [([], dict(host="127.0.0.1", port=None, allow_any_model=False, share_token_with_visitors=False,
                               max_model_bytes=200 * 10**6, max_cache_bytes=2 * 10**9,
                               max_seconds_per_request=60.0))]


# -------------------------------------------------------------------------------------------------------- the Space
def parse_space(out: Path) -> tuple[ast.Module, dict, str]:
    app = (out / "app.py").read_text(encoding="utf-8")
    tree = ast.parse(app)
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("---\n")
    end = readme.index("\n---\n", 4)
    return tree, yaml.safe_load(readme[4:end]), readme


def check_space(out: Path, source: str, title: str, local: bool):
    """app.py is exactly the expected statements, its literals the inputs; the front matter exactly the keys."""
    tree, front, _ = parse_space(out)
    kinds = [type(node).__name__ for node in tree.body]
    assert kinds == ["Expr", "ImportFrom", "ImportFrom", "Assign", "Assign", "Assign", "If"]
    assert [ast.unparse(node) for node in tree.body[1:3]] == ["from pathlib import Path",
                                                              "from genzoo.demo import build_demo"]
    models, title_node = tree.body[3], tree.body[4]
    assert ast.unparse(models.targets[0]) == "MODELS" and ast.unparse(title_node.targets[0]) == "TITLE"
    if local:
        assert ast.unparse(models.value) == "[str(Path(__file__).parent / 'model')]"
    else:
        assert ast.literal_eval(models.value) == [source]
    assert ast.literal_eval(title_node.value) == title
    assert ast.unparse(tree.body[5]) == "demo = build_demo(MODELS, title=TITLE)"  # never allow_any_model
    assert ast.unparse(tree.body[6]) == "if __name__ == '__main__':\n    demo.launch()"
    calls = sorted(ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call))
    assert calls == sorted(["build_demo", "demo.launch", *(["str", "Path"] if local else [])])
    expected = {"title": title, "sdk": "gradio", "sdk_version": gr.__version__, "app_file": "app.py",
                "tags": ["genzoo", "diffusers"]}
    if not local:
        expected["models"] = [source]
    assert front == expected


def test_a_space_pastes_nothing_into_code_or_front_matter(tmp_path, capsys):
    """Finding 4: a title with triple quotes stays a string; a newline in an id, a title or a requirement is refused;
    a folder whose name holds a newline and front matter is written only with a title of its own, and its name
    reaches neither file."""
    title = 'x""" + __import__("os").system("id") + """ \'\'\' {} sdk: docker'
    out = write_space("user/gan-digits", tmp_path / "a", title=title,
                      requirement="genzoo[demo] @ git+https://example/genzoo")
    check_space(out, "user/gan-digits", title, local=False)
    for source, kwargs, message in [
        ("user/gan-digits\nsdk: docker", {}, "is neither a pipeline folder nor a valid Hub id"),
        ('user/x"""\nimport os', {}, "is neither a pipeline folder nor a valid Hub id"),
        ("user/gan-digits", {"title": 'a"""\nimport os\n"""'}, "title must be one line of printable text of 1 to "
                                                                "100 characters, got 'a\"\"\"\\nimport os"),
        ("user/gan-digits", {"title": "x" * 101}, "title must be one line"),
        ("user/gan-digits", {"requirement": "genzoo\n--index-url http://evil"}, "requirement must be one line"),
        ("user/gan-digits", {"requirement": "--index-url http://evil"}, "requirement must be one pip requirement"),
    ]:
        with pytest.raises(ValueError) as caught:
            write_space(source, tmp_path / "b", **kwargs)
        assert message in str(caught.value) and one_line(str(caught.value))
    assert not (tmp_path / "b").exists()
    assert main(["space", "user/x\nsdk: docker", str(tmp_path / "b")]) == 2
    assert "valid Hub id" in capsys.readouterr().err

    odd = copy_pipeline("vae-digits", tmp_path / 'vae"""\nsdk: docker')
    with pytest.raises(ValueError, match="title must be one line .* \\(from the folder's name; pass --title\\)"):
        write_space(str(odd), tmp_path / "c")
    out = write_space(str(odd), tmp_path / "c", title="a VAE", requirement="genzoo[demo] @ git+https://example/genzoo")
    check_space(out, str(odd), "a VAE", local=True)
    assert "sdk: docker" not in (out / "README.md").read_text() + (out / "app.py").read_text()


def test_a_space_refuses_a_link_outside_the_pipeline_and_writes_nothing(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the operator's notes")
    folder = copy_pipeline("vae-digits", tmp_path / "vae")
    (folder / "notes.txt").symlink_to(secret)
    with pytest.raises(OutsideFolderError) as caught:
        write_space(str(folder), tmp_path / "space", requirement="genzoo[demo] @ git+https://example/genzoo")
    assert str(folder / "notes.txt") in str(caught.value) and str(secret) in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.txt", "vae"]  # no Space, no staging folder
    assert main(["space", str(folder), str(tmp_path / "space"), "--requirement", "genzoo[demo]==0.1"]) == 2


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_space_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    import genzoo.demo.space

    out = tmp_path / "space"
    real_copy = shutil.copyfile
    copied = []

    def copy_then_fail(source, target):
        if copied:
            raise OSError("No space left on device")
        copied.append(real_copy(source, target))

    monkeypatch.setattr(genzoo.demo.space.shutil, "copyfile", copy_then_fail)
    with pytest.raises(OSError, match="No space left"):
        write_space(str(ZOO / "vae-digits"), out, requirement="genzoo[demo] @ git+https://example/genzoo")
    monkeypatch.undo()
    assert copied and list(tmp_path.iterdir()) == []  # no half Space, no staging folder
    import subprocess
    import sys

    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()
    stale = tmp_path / f".space.genzoo-new-{killed.pid}-deadbeef"  # what a write killed in that process leaves
    (stale / "model").mkdir(parents=True)
    out.mkdir()  # an empty folder is fine
    write_space(str(ZOO / "vae-digits"), out, requirement="genzoo[demo] @ git+https://example/genzoo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space"]
    check_space(out, str(ZOO / "vae-digits"), "genzoo: vae-digits", local=True)


# ---------------------------------------------------------------------------------- arbitrary values (hypothesis)
HUB_IDS = st.from_regex(r"\A[a-z][a-z0-9]{0,8}(/[a-z][a-z0-9._-]{0,8}[a-z0-9])?\Z")
TRICKY = st.sampled_from(['"""', "'''", "\n", "\r", "---", "\nsdk: docker", "{title}", "\\", "\x00", "\u2028",
                          "\ud800", "#", ": ", "- ", "!!python/object", "%", "' + os.system('id') + '", "\t"])
TEXT = st.one_of(st.text(max_size=40), st.lists(st.one_of(TRICKY, st.text(max_size=5)), max_size=5).map("".join))


PIECES = ['"""', "'''", "---", "{title}", "\\", "#", ": ", "- ", "%", "&a *a", "!!python/object:os.system",
          "' + os.system('id') + '", "\u00e9", "\U0001f600"]
PRINTABLE = st.lists(st.one_of(st.sampled_from(PIECES),
                               st.text(st.characters(exclude_categories=("C", "Zl", "Zp")), max_size=6)),
                     min_size=1, max_size=6).map("".join).filter(lambda text: text.strip() and len(text) <= 100)
#: for each argument of write_space: (a value a careful user gives, anything)
SPACE_ARGUMENTS = {
    "source": (HUB_IDS, st.one_of(TEXT, st.tuples(HUB_IDS, TRICKY).map("".join))),
    "title": (st.one_of(st.none(), PRINTABLE), TEXT),
    "requirement": (st.sampled_from([None, "genzoo[demo]>=0.1", "genzoo[demo] @ git+https://example/genzoo",
                                     "git+https://example/genzoo"]), TEXT),
}


@st.composite
def spaces(draw):
    """Arguments of write_space: careful values, with up to two of them replaced by any text."""
    odd = draw(st.sets(st.sampled_from(list(SPACE_ARGUMENTS)), max_size=2))
    return {name: draw(SPACE_ARGUMENTS[name][name in odd]) for name in SPACE_ARGUMENTS}


@pytest.mark.slow
@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(space=spaces())
def test_a_space_of_arbitrary_text_is_an_error_or_exactly_the_expected_files(tmp_path, monkeypatch, space):
    source, title, requirement = space["source"], space["title"], space["requirement"]
    monkeypatch.chdir(tmp_path)  # a relative source names nothing that exists
    out = Path(tmp_path) / f"space-{time.monotonic_ns()}"
    try:
        write_space(source, out, title=title, requirement=requirement)
    except (ValueError, FileNotFoundError) as exc:
        assert one_line(str(exc)), str(exc)
        assert not out.exists()
        event("refused")
        return
    event("written")
    check_space(out, source, title if title is not None else f"genzoo: {source}", local=False)
    assert (out / "requirements.txt").read_text(encoding="utf-8").count("\n") == 1


@pytest.fixture(scope="module")
def handlers():
    backend = DemoBackend([str(ZOO / "gan-digits"), str(ZOO / "flow-matching-shapes"),
                           str(ZOO / "latent-flow-matching-shapes")], max_seconds_per_request=0.5)
    for model in backend.models.values():
        model.controls()  # loaded before the clock starts
    return gradio_handlers(backend)


JUNK = st.one_of(st.none(), st.booleans(), st.floats(), st.text(max_size=8), st.lists(st.integers(), max_size=2))
#: for each argument of /generate: (a value the page could send, anything an API client could send)
ARGUMENTS = {
    "name": (st.sampled_from(["gan-digits", "flow-matching-shapes", "latent-flow-matching-shapes"]),
             st.one_of(st.sampled_from(["", "/etc/passwd", "../pipelines/gan-digits", "user/gan-digits"]),
                       st.text(max_size=20), JUNK)),
    "num_samples": (st.integers(1, 4), st.one_of(st.integers(-3, 10**6), st.floats(0, 8), JUNK)),
    "seed": (st.integers(0, MAX_SEED), st.one_of(st.integers(-(2**70), 2**70), JUNK)),
    "randomize": (st.booleans(), JUNK),
    "steps": (st.one_of(st.none(), st.integers(1, 4)), st.one_of(st.integers(-3, 10**9), JUNK)),
    "solver": (st.sampled_from([OWN_SOLVER, "Heun (genzoo)", "DDIM (Diffusers)"]), JUNK),
    "class_label": (st.sampled_from(["every class in turn", "", "circle", "0", "3"]),
                    st.one_of(st.sampled_from(["-1", "99999999999999999999", "\u0661", "hexagon"]), JUNK)),
    "guidance_scale": (st.sampled_from(["", " 1.5 ", "0", "30"]),
                       st.one_of(st.sampled_from(["nan", "1e308", "-0", "30.0001"]), JUNK)),
    "prompt": (st.sampled_from(["", "a red circle at the top left"]), st.one_of(st.text(max_size=400), JUNK)),
    "negative_prompt": (st.sampled_from(["", "a blue square"]), st.one_of(st.text(max_size=400), JUNK)),
}


@st.composite
def requests(draw):
    """Arguments of /generate: the page's values, with up to two of them replaced by anything."""
    odd = draw(st.sets(st.sampled_from(list(ARGUMENTS)), max_size=2))
    return {name: draw(ARGUMENTS[name][name in odd]) for name in ARGUMENTS}


def check_answer(call):
    """A result, or a one-line gradio.Error; never another exception, never longer than the time bound allows."""
    start = time.monotonic()
    try:
        result = call()
    except gr.Error as exc:
        assert one_line(exc.message), exc.message
        event("refused")
        result = None
    else:
        event("answered")
    assert time.monotonic() - start < 20
    return result


@pytest.mark.slow
@settings(max_examples=25, deadline=None, derandomize=True)
@given(request=requests(), dataset=st.one_of(st.sampled_from(["shapes", "digits"]), JUNK))
def test_the_page_answers_arbitrary_values_with_a_picture_or_one_line(handlers, request, dataset):
    args = list(request.values())
    result = check_answer(lambda: handlers["generate"](*args))
    if result is not None:
        image, used_seed, what = result
        assert isinstance(image, PIL.Image.Image) and 0 <= used_seed <= MAX_SEED and one_line(what)
    described = check_answer(lambda: handlers["describe"](request["name"]))
    assert len(described) == 8  # describe never fails: a model it cannot show empties the controls and says why
    gallery = check_answer(lambda: handlers["compare"](dataset, request["num_samples"], request["seed"]))
    assert gallery is None or all(isinstance(image, PIL.Image.Image) for image, _ in gallery)
