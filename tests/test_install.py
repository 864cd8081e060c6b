"""The lock files (``bash tools/lock.sh``) agree with requirements*.txt and with this environment."""
from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata as md
import os
from pathlib import Path

import pytest
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
APP_LOCK = ROOT / "requirements.lock"
TEST_LOCK = ROOT / "requirements-test.lock"
# mediapipe 0.10.21 requires these; its face detection and face mesh never import them.
LEFT_OUT = {"jax": "mediapipe", "jaxlib": "mediapipe", "opencv-contrib-python": "mediapipe"}
# Set by .ci/run: 1 = this environment must be the lock install, 0 = never compare it.
STRICT_ENV = "FORGERY_LENS_LOCK_INSTALL"


def _lines(path: Path):
    """(path, line number, text) of every requirement line, following ``-r`` includes."""
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        text = raw.split(" #")[0].strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith(("-r ", "--requirement ")):
            yield from _lines(path.parent / text.split(None, 1)[1])
        else:
            yield path, number, text


def _pins(path: Path) -> dict[str, tuple[str, str]]:
    """Canonical name -> (pinned version, where), failing on anything but ``name==version``."""
    pins: dict[str, tuple[str, str]] = {}
    for file, number, text in _lines(path):
        where = f"{file.name}:{number}"
        try:
            req = Requirement(text)
        except InvalidRequirement as err:
            pytest.fail(f"{where}: {text!r} is not a requirement ({err})")
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
            pytest.fail(f"{where}: {text!r} is not an exact name==version pin")
        if req.extras or req.marker is not None or req.url is not None:
            pytest.fail(f"{where}: {text!r} is more than a pin")
        name = canonicalize_name(req.name)
        if name in pins:
            pytest.fail(f"{where}: {req.name} is pinned again (first at {pins[name][1]})")
        pins[name] = (specs[0].version, where)
    return pins


@pytest.fixture(scope="module")
def test_pins() -> dict[str, tuple[str, str]]:
    return _pins(TEST_LOCK)


def test_each_lock_pins_every_package_exactly_once(test_pins):
    app = _pins(APP_LOCK)
    assert len(app) > 50 and {"torch", "torchvision", "mediapipe", "gradio"} <= set(app)
    assert TEST_LOCK.read_text().count("-r requirements.lock") == 1
    assert set(app) < set(test_pins), "requirements-test.lock must build on requirements.lock"
    assert {"pytest", "pytest-timeout", "playwright"} <= set(test_pins) - set(app)


def test_jax_jaxlib_and_opencv_contrib_are_left_out(test_pins):
    assert not set(LEFT_OUT) & set(test_pins), "bash tools/lock.sh leaves these out"


@pytest.mark.parametrize("source", ["requirements.txt", "requirements-test.txt"])
def test_every_requirement_is_satisfied_by_its_pin(source, test_pins):
    checked, problems = 0, []
    for file, number, text in _lines(ROOT / source):
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name in LEFT_OUT or (req.marker is not None and not req.marker.evaluate()):
            continue  # pinned in requirements.txt only to keep a plain install from backtracking
        checked += 1
        if name not in test_pins:
            problems.append(f"{file.name}:{number}: {text} is not in the lock")
        elif not req.specifier.contains(test_pins[name][0], prereleases=True):
            problems.append(f"{file.name}:{number}: {text} but the lock pins {test_pins[name][0]}")
    assert checked >= 3 and not problems, "\n".join(problems) + "\nrerun: bash tools/lock.sh"


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_pyproject_installs_the_project_packages_with_requirements_txt():
    config = _pyproject()
    assert "dependencies" in config["project"]["dynamic"]
    assert config["tool"]["setuptools"]["dynamic"]["dependencies"] == {"file": ["requirements.txt"]}
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    # setuptools' find_packages: folders with an __init__.py whose dotted name matches `include`
    # (importing setuptools here would put its vendored packages on sys.path for the tests after it)
    tops = [d for d in ROOT.iterdir() if d.is_dir() and not d.name.startswith(".")]
    folders = {".".join(p.parent.relative_to(ROOT).parts) for top in tops for p in top.rglob("*.py")}
    shipped = {f for f in folders if any(fnmatch.fnmatchcase(f, pattern) for pattern in include)}
    assert {"detectors", "detectors.faces", "pipeline", "training", "ui", "explain"} <= shipped
    assert not {f.split(".")[0] for f in shipped} & {"tests", "experiments", "tools"}
    missing = sorted(f for f in shipped if not (ROOT / f.replace(".", "/") / "__init__.py").is_file())
    assert not missing, f"no __init__.py, so a wheel leaves them out: {missing}"


def test_console_scripts_run_what_the_readme_commands_run():
    scripts = _pyproject()["project"]["scripts"]
    # python app.py, python -m pipeline, python -m training
    assert scripts == {"forgery-lens-app": "app:main", "forgery-lens-analyze": "pipeline.batch:main",
                       "forgery-lens-train": "training.cli:main"}
    assert "from .batch import main" in (ROOT / "pipeline" / "__main__.py").read_text()
    assert "from .cli import main" in (ROOT / "training" / "__main__.py").read_text()
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target


def _cuda_runtime(name: str) -> bool:
    """The CUDA libraries PyPI's Linux torch build pulls in; a ``+cpu`` torch needs none."""
    return name.startswith(("nvidia-", "cuda-")) or name == "triton"


def test_environment_matches_the_lock(test_pins):
    installed = {canonicalize_name(d.metadata["Name"]): d for d in md.distributions()}
    torch_cpu = "torch" in installed and Version(installed["torch"].version).local == "cpu"
    differ = []
    for name, (pin, _) in sorted(test_pins.items()):
        dist = installed.get(name)
        if dist is None:
            if not (torch_cpu and _cuda_runtime(name)):
                differ.append(f"{name}=={pin} is not installed")
        elif not Requirement(f"{name}=={pin}").specifier.contains(dist.version, prereleases=True):
            differ.append(f"{name}=={pin} but {dist.version} is installed")
    # pip marks what a command names as REQUESTED: a lock install names every package, an
    # install from requirements.txt only its ~20 top-level entries.
    requested = sum(installed[n].read_text("REQUESTED") is not None for n in test_pins if n in installed)
    mode = os.environ.get(STRICT_ENV, "")
    is_lock_install = mode == "1" or (mode != "0" and requested > len(test_pins) // 2)
    if mode == "0" or (differ and not is_lock_install):
        pytest.skip(
            f"not a lock install ({STRICT_ENV}={mode or 'unset'}; pip marked {requested} of "
            f"{len(test_pins)} locked packages as requested); it differs from requirements-test.lock in "
            f"{len(differ)}: " + "; ".join(differ[:5]) + (" ..." if len(differ) > 5 else "")
        )
    if mode == "1":  # CI: nothing beyond the lock either
        extra = sorted(set(installed) - set(test_pins) - {"pip", "forgery-lens"})
        differ += [f"{n}=={installed[n].version} is installed but not locked" for n in extra]
    # The lock is closed: every locked package's own requirements are locked too (pip check).
    for name in sorted(set(test_pins) & set(installed)):
        for text in installed[name].requires or []:
            req = Requirement(text)
            dep = canonicalize_name(req.name)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            if LEFT_OUT.get(dep) == name or (torch_cpu and _cuda_runtime(dep)):
                continue
            if dep not in test_pins:
                differ.append(f"{name} requires {text}, which the lock leaves out")
            elif not req.specifier.contains(test_pins[dep][0], prereleases=True):
                differ.append(f"{name} requires {text}, the lock pins {test_pins[dep][0]}")
    assert not differ, "this lock install differs from requirements-test.lock:\n" + "\n".join(differ)
