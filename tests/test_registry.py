"""One registry entry per family, read from its detector class."""
from __future__ import annotations

from pathlib import Path

import pytest

from detectors import Detector, UnknownDetector, get_entry, get_family, list_detectors, list_families
from detectors import registry
from detectors.base import CONFIG_FILE as BASE_CONFIG_FILE
from detectors.file_format import CONFIG_FILE


def test_families_come_in_the_apps_order_with_the_test_family_last():
    assert list_families() == list(registry.BUILTIN_FAMILIES)
    assert list_families(include_hidden=True) == [*registry.BUILTIN_FAMILIES, *registry.TEST_FAMILIES]
    assert "tiny_test" not in list_detectors() and "tiny_test" in list_detectors(include_hidden=True)


def test_each_family_entry_is_its_class_facts():
    for family in list_families(include_hidden=True):
        info = get_family(family)
        cls = info.model_class
        assert issubclass(cls, Detector) and cls.family == family
        assert (info.title, info.paper, info.serial) == (cls.display_name, cls.paper, cls.serial)
        assert get_entry(f"{family}_{'test' if family == 'tiny' else 'demo'}").family == family
    with pytest.raises(UnknownDetector, match="known families: lav"):
        get_family("no_such_family")


def test_defining_a_detector_class_registers_its_family_and_subclasses_do_not(monkeypatch):
    monkeypatch.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))

    class Probe(Detector):
        family = "probe_family"
        display_name = "Probe"
        paper = "a test"
        serial = True

    class ProbeVariant(Probe):  # same family: the entry stays the declaring class
        pass

    info = get_family("probe_family")
    assert (info.title, info.paper, info.serial, info.model_class) == ("Probe", "a test", True, Probe)


def test_the_optional_hooks_have_defaults_on_the_base(tmp_path: Path):
    tiny = registry.get_family("tiny").model_class
    assert tiny.side_files == () and tiny.reshape_transform is None
    assert get_family("vlffd").model_class.side_files  # a family with a tokenizer overrides it
    from detectors import build_detector

    build_detector("tiny_test").load_side_files(tmp_path)  # nothing to read, no error
    assert BASE_CONFIG_FILE == CONFIG_FILE == "config.json"
