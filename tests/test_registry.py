"""One registry entry per family, read from its detector class."""
from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

from detectors import Detector, UnknownDetector, get_entry, get_family, list_detectors, list_families, registry
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


def _registered_functions(tree: ast.Module) -> list[ast.FunctionDef]:
    """Top-level functions decorated ``@register_detector`` or ``@register_detector(...)``."""
    def registers(decorator: ast.expr) -> bool:
        d = decorator.func if isinstance(decorator, ast.Call) else decorator
        return isinstance(d, ast.Name) and d.id == "register_detector"

    return [n for n in tree.body if isinstance(n, ast.FunctionDef) and any(registers(d) for d in n.decorator_list)]


def test_every_family_module_registers_the_timm_way():
    """One ``_create(variant, **model_args)`` per family module; each registered function is
    ``model_args = dict(...)`` then ``return _create("<its name>", **{**model_args, **overrides})``."""
    for family in registry.BUILTIN_MODULES:
        module = importlib.import_module(f"detectors.{family}")
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        creates = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_create"]
        assert len(creates) == 1, family
        assert [a.arg for a in creates[0].args.args][:1] == ["variant"] and creates[0].args.kwarg.arg == "model_args"
        functions = _registered_functions(tree)
        assert functions, family
        for fn in functions:
            body = fn.body[1:] if ast.get_docstring(fn) is not None else fn.body
            assert len(body) == 2, fn.name
            args, ret = body
            target = args.targets[0] if isinstance(args, ast.Assign) else args.target
            assert isinstance(target, ast.Name) and target.id == "model_args", fn.name
            assert isinstance(args.value, ast.Call) and args.value.func.id == "dict", fn.name
            call = ret.value
            assert isinstance(ret, ast.Return) and isinstance(call, ast.Call) and call.func.id == "_create", fn.name
            assert [ast.literal_eval(a) for a in call.args] == [fn.name], fn.name
            (merged,) = call.keywords
            assert merged.arg is None and isinstance(merged.value, ast.Dict), fn.name
            assert merged.value.keys == [None, None], fn.name
            assert [v.id for v in merged.value.values] == ["model_args", "overrides"], fn.name
            assert fn.args.kwarg.arg == "overrides" and not fn.args.args, fn.name


class _ConfigOnly:
    """Stands in for a detector class: keeps the config, builds no network (``*_full`` are large)."""

    def __init__(self, config: Any, vlm: Any = None) -> None:
        self.config = config


def test_each_factory_builds_a_config_named_as_it_is_registered(monkeypatch):
    for family in list_families(include_hidden=True):
        cls = get_family(family).model_class
        monkeypatch.setattr(sys.modules[cls.__module__], cls.__name__, _ConfigOnly)
    for name in list_detectors(include_hidden=True):
        entry = get_entry(name)
        assert entry.factory.__module__ == f"detectors.{entry.family}", name
        config = entry.factory(threshold=0.25).config
        assert isinstance(config, get_family(entry.family).model_class.config_class), name
        assert (config.name, config.threshold) == (name, 0.25)  # overrides reach the config
