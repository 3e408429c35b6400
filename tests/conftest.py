"""Shared fixtures. Tests never touch the network: Hub access is pointed at nowhere unless a test starts its own server."""

import atexit
import logging
import os
import shutil
import tempfile

# Before anything imports huggingface_hub or diffusers (both read these once, at import): a private, throw-away
# Hugging Face home (Hub cache, Diffusers' remote-code module cache), offline, no telemetry.
_HF_HOME = tempfile.mkdtemp(prefix="genzoo-tests-hf-home-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_MODULES_CACHE"] = os.path.join(_HF_HOME, "modules")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# pytest-xdist's workers (`pytest -n 2`, the README's command) share the cores: one torch thread each, or they fight
# over them (two processes of two threads on two cores run many times slower than one alone).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def two_process_runs(tmp_path_factory):
    """The tests' two-process training runs (helpers.TWO_PROCESS_RUNS), all in one ``accelerate launch``."""
    from helpers import TwoProcessRuns

    return TwoProcessRuns(tmp_path_factory.mktemp("two-processes"))


@pytest.fixture
def diffusers_logs(caplog):
    """Capture what Diffusers logs (its root logger does not propagate by default)."""
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.enable_propagation()
    caplog.set_level(logging.WARNING)
    try:
        yield caplog
    finally:
        diffusers_logging.disable_propagation()


@pytest.fixture
def example_plugins(monkeypatch):
    """'Install' the plugin packages in tests/plugins for one test: genzoo_example_plugin (a method, a pipeline, a
    scheduler, two models) and genzoo_broken_plugin (fails to import); see ``helpers.plugins_installed``.

    The folder goes on ``sys.path`` through ``monkeypatch``, so that a test which changes ``sys.path`` with
    ``monkeypatch`` too cannot bring the plugins back when its changes are undone (it restores the path it saw first).
    """
    from genzoo import registry
    from helpers import PLUGINS, uninstall_plugins

    monkeypatch.syspath_prepend(str(PLUGINS))
    registry.refresh()
    yield str(PLUGINS)
    uninstall_plugins()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A Hugging Face Hub of this test's own (tests/hub_server.py), with huggingface_hub, Diffusers and ``datasets``
    pointed at it: online, no Xet, no ambient token, a fresh Hub cache (``hub.cache_dir``; delete it to clear the
    cache) and a fresh default ``datasets`` cache next to it (``Dataset.push_to_hub`` and ``load_dataset`` of a dataset
    id work; the dataset viewer is not asked). Yields
    ``hub.url``, ``hub.token`` (user "user", who owns the namespace "user"; "hf_other_token" is user "someone-else")
    and ``hub.server`` (the HubServer: ``.repos``, ``.requests``, ``.commit(...)`` to seed repos directly, ...)."""
    from hub_server import HubFixture, HubServer, point_clients_at

    cache_dir = tmp_path / "hub-cache"
    with HubServer(tokens={"hf_test_token": "user", "hf_other_token": "someone-else"}) as server:
        point_clients_at(monkeypatch, server.url, str(cache_dir))
        yield HubFixture(url=server.url, token="hf_test_token", cache_dir=str(cache_dir), server=server)
        assert not server.errors, "HubServer crashed:\n" + "\n".join(server.errors)
