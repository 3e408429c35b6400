"""Shared fixtures. Tests never touch the network: Hub access is pointed at nowhere unless a test starts its own server."""

import logging
import os

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
