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

import pytest  # noqa: E402


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


PLUGINS = os.path.join(os.path.dirname(__file__), "plugins")
PLUGIN_MODULES = ("genzoo_example_plugin", "genzoo_broken_plugin")


@pytest.fixture
def example_plugins(monkeypatch):
    """'Install' the plugin packages in tests/plugins for one test: genzoo_example_plugin (a pipeline, a scheduler, two
    models) and genzoo_broken_plugin (fails to import). Their .dist-info folders make importlib.metadata see their
    entry points once the folder is on sys.path; the registry is refreshed on the way in and out, and the plugin
    modules are forgotten, so no other test sees them."""
    import sys

    from genzoo import registry

    monkeypatch.syspath_prepend(PLUGINS)
    registry.refresh()
    try:
        yield PLUGINS
    finally:
        registry.refresh()
        for name in list(sys.modules):
            if name.partition(".")[0] in PLUGIN_MODULES:
                del sys.modules[name]
