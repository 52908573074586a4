"""The package works as installed from its wheel, not only from this source tree.

Builds the wheel from a clean copy of the source (``python -m build --wheel``), installs it
(not editable) into a fresh virtual environment with only its declared core dependencies (no
vLLM, no torch: not the cpu/gpu extras), and from an empty working directory, with no
PYTHONPATH, runs the installed console script: ``--help``, ``--version``, ``data synth``,
``data check`` and ``run --print-config`` with the built-in templates. What this catches: files
read relative to the source tree, a missing package-data entry, an import of a dev-only or
extra-only package on a core path. The first run downloads the core dependencies into pip's
cache; later runs take about half a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from screenspot_eval.protocol.prompts import DEFAULT_TEMPLATE_NAME, list_templates, load_template

pytestmark = pytest.mark.wheel

REPO = Path(__file__).resolve().parents[1]
TEMPLATES_DIR = REPO / "screenspot_eval" / "protocol" / "templates"
N_SAMPLES = 12
#: Not in the environment of the build, the install or the installed commands: the machine's
#: pip setup (extra wheel folders, constraints) and anything that points back at this checkout.
DROPPED_ENV = ("PIP_FIND_LINKS", "PIP_CONSTRAINT", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
NOT_CORE = ("vllm", "torch", "torchvision", "transformers", "pytest", "playwright")


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env |= {
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "HF_HUB_OFFLINE": "1",
    }
    return env


def sh(args: list[str | Path], *, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, (
        f"{proc.args} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n"
        f"--- stderr\n{proc.stderr[-4000:]}"
    )
    return proc.stdout


def source_files() -> list[str]:
    """The files of the checkout: git's tracked and untracked-but-not-ignored ones, else all
    but the usual build, cache and environment folders."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout.decode()
        return [p for p in listed.split("\0") if p and (REPO / p).is_file()]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "build", "dist", "results", "models", "data", "__pycache__"}
        return [
            str(p.relative_to(REPO))
            for p in REPO.rglob("*")
            if p.is_file() and not skip & set(p.relative_to(REPO).parts)
            and not any(part.endswith(".egg-info") for part in p.parts)
        ]  # fmt: skip


@dataclass
class Installed:
    wheel: Path
    venv: Path
    python: Path
    script: Path
    site_packages: Path
    work: Path

    def cli(self, *args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
        return sh([self.script, *args], cwd=self.work, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    # A clean copy: no stale build/ or egg-info of the checkout can leak into the wheel.
    src = base / "src"
    for rel in source_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    dist = base / "dist"
    try:
        import build  # noqa: F401

        command = [sys.executable, "-m", "build", "--wheel", "--outdir", dist, src]
    except ImportError:  # the dev extra has build; plain pip builds the same wheel
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", dist, src]
    ok(sh(command, cwd=base, timeout=600))
    (wheel,) = dist.glob("screenspot_eval-*.whl")

    venv = base / "venv"
    ok(sh([sys.executable, "-m", "venv", venv], cwd=base))
    python = venv / "bin" / "python"
    ok(sh([python, "-m", "pip", "install", "--quiet", wheel], cwd=base, timeout=1200))
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = ok(sh([python, "-c", where], cwd=base))
    work = base / "work"
    work.mkdir()
    return Installed(
        wheel=wheel,
        venv=venv,
        python=python,
        script=venv / "bin" / "screenspot-eval",
        site_packages=Path(purelib.strip()),
        work=work,
    )


@pytest.fixture(scope="module")
def synth(installed: Installed) -> tuple[Path, subprocess.CompletedProcess]:
    """A small synthetic release written by the installed command, relative to the work dir."""
    proc = installed.cli("data", "synth", "synth", "--n", str(N_SAMPLES), "--max-width", "160")
    return installed.work / "synth", proc


def test_the_wheel_holds_the_package_and_its_data(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as whl:
        names = set(whl.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_text = whl.read(entry_points).decode()
    shipped = sorted(TEMPLATES_DIR.glob("*.toml"))
    assert shipped, "no templates in the source tree?"
    for template in shipped:
        assert f"screenspot_eval/protocol/templates/{template.name}" in names
    assert "screenspot_eval/py.typed" in names
    assert "screenspot_eval/cli/app.py" in names
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"screenspot_eval"}, top
    assert "screenspot-eval = screenspot_eval.cli.app:main" in entry_text
    assert "screenspot_eval.backends.vllm.plugin:register" in entry_text


def test_it_is_installed_from_site_packages_with_core_dependencies_only(
    installed: Installed,
) -> None:
    cfg = (installed.venv / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg
    probe = (
        "import importlib.metadata as md, importlib.util as u, json, sys, screenspot_eval\n"
        "dist = md.distribution('screenspot-eval')\n"
        "print(json.dumps({'file': screenspot_eval.__file__, 'path': sys.path,\n"
        "  'direct_url': json.loads(dist.read_text('direct_url.json') or '{}'),\n"
        f"  'present': [m for m in {list(NOT_CORE)!r} if u.find_spec(m)]}}))"
    )
    shown = json.loads(ok(sh([installed.python, "-c", probe], cwd=installed.work)))
    print(f"screenspot_eval.__file__ = {shown['file']}")
    package_file = Path(shown["file"])
    assert package_file == installed.site_packages / "screenspot_eval" / "__init__.py"
    assert not package_file.resolve().is_relative_to(REPO)
    assert not any(Path(p).resolve() == REPO for p in shown["path"] if p), shown["path"]
    assert shown["direct_url"].get("dir_info", {}).get("editable") is not True
    assert "archive_info" in shown["direct_url"], shown["direct_url"]  # from the .whl file
    assert shown["present"] == [], f"installed without being a core dependency: {shown}"


def test_help_and_version(installed: Installed) -> None:
    helped = ok(installed.cli("--help"))
    for command in ("run", "compare", "data", "report", "serve", "verify-embedder"):
        assert command in helped, command
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert ok(installed.cli("--version")).strip() == f"screenspot-eval {version}"


def test_data_synth_and_check(synth: tuple[Path, subprocess.CompletedProcess]) -> None:
    root, proc = synth
    assert f"wrote {N_SAMPLES} samples" in ok(proc)
    assert len(list((root / "annotations").glob("*.json"))) > 0
    assert len(list((root / "images").rglob("*.png"))) == N_SAMPLES


def test_data_check_counts_the_samples(
    installed: Installed, synth: tuple[Path, subprocess.CompletedProcess]
) -> None:
    root, _ = synth
    shown = ok(installed.cli("data", "check", root.name))
    assert f"samples loaded: {N_SAMPLES}; excluded: 0" in shown
    assert "official" in shown  # the comparison with the official release's totals


@pytest.mark.parametrize("prompt", [None, "gemma4-point2d"])
def test_print_config_loads_the_shipped_template(
    installed: Installed, synth: tuple[Path, subprocess.CompletedProcess], prompt: str | None
) -> None:
    root, _ = synth
    args = ["run", "--model", "some/model", "--data", str(root), "--print-config"]
    shown = json.loads(ok(installed.cli(*args, *(["--prompt", prompt] if prompt else []))))
    name = prompt or DEFAULT_TEMPLATE_NAME
    from_source = load_template(name)  # the checkout's copy, in this test's own environment
    assert shown["config"]["prompt"]["template"] == name
    assert shown["prompt"]["name"] == name
    assert shown["prompt"]["content_hash"] == from_source.content_hash
    assert shown["prompt"]["convention"] == from_source.convention
    source = Path(shown["prompt"]["source"])
    assert source == installed.site_packages / "screenspot_eval/protocol/templates" / f"{name}.toml"
    assert shown["config"]["data"]["source"] == str(root)
    assert shown["llm_kwargs"]["model"] == "some/model"


def test_an_unknown_template_names_the_shipped_ones(
    installed: Installed, synth: tuple[Path, subprocess.CompletedProcess]
) -> None:
    root, _ = synth
    proc = installed.cli(
        "run", "--model", "some/model", "--data", str(root), "--print-config", "--prompt", "nosuch"
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "nosuch" in proc.stderr
    for name in list_templates():
        assert name in proc.stderr, proc.stderr
