"""Refactors change nothing genzoo computes: every zoo pipeline samples, and every zoo recipe trains for three steps,
to the same bits as when tests/data/fingerprints.json was recorded (tests/fingerprints.py says how)."""

import json

import pytest

from fingerprints import STORE, compute, zoo_names

pytestmark = pytest.mark.slow


def test_every_zoo_pipeline_samples_and_every_recipe_trains_to_the_recorded_bits():
    stored = json.loads(STORE.read_text())
    assert sorted(stored["samples"]) == sorted(stored["training"]) == zoo_names()  # a new zoo folder is recorded too
    found = compute()
    changed = [f"{part} of {name}" for part in found for name in found[part] if found[part][name] != stored[part][name]]
    assert not changed, f"different bits from the recorded fingerprints: {', '.join(changed)}"
