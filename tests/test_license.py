"""The licence the package metadata, the model cards and the repository state is one and the same file."""

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_repository_ships_the_licence_its_metadata_and_cards_name():
    metadata = configparser.ConfigParser()
    metadata.read(ROOT / "setup.cfg")
    assert metadata["metadata"]["license"] == "Apache-2.0"
    assert metadata["metadata"]["license_files"].split() == ["LICENSE"]  # shipped in the wheel and the sdist
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    cards = sorted(ROOT.glob("pipelines/*/README.md"))
    assert cards and all("\nlicense: apache-2.0\n" in card.read_text() for card in cards)
