"""The package layering: import-linter's contracts hold, and they cover every module.

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``). A contract that names only
some packages would let a new package slip past it, so this also checks that every module of
``screenspot_eval`` is under a layer, and that every module outside ``backends.vllm`` is a
source of the "no vllm / torch" contract.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import screenspot_eval

ROOT = Path(__file__).resolve().parents[1]
VLLM_HOME = "screenspot_eval.backends.vllm"


def contracts() -> list[dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["importlinter"]["contracts"]


def all_modules() -> list[str]:
    found = pkgutil.walk_packages(screenspot_eval.__path__, prefix="screenspot_eval.")
    return sorted(m.name for m in found)


def covered(module: str, roots: list[str]) -> bool:
    return any(module == r or module.startswith(r + ".") for r in roots)


def test_import_contracts_hold() -> None:
    linter = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(linter)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout


def test_every_module_sits_in_a_layer() -> None:
    [layers] = [c for c in contracts() if c["type"] == "layers"]
    roots = [name.strip() for layer in layers["layers"] for name in layer.split("|")]
    top_level = {"screenspot_eval.__main__"}  # the console entry point sits above everything
    missing = [m for m in all_modules() if not covered(m, roots) and m not in top_level]
    assert missing == []


def test_every_module_outside_backends_vllm_is_forbidden_vllm_and_torch() -> None:
    [forbidden] = [c for c in contracts() if "torch" in c.get("forbidden_modules", [])]
    assert {"vllm", "torch", "transformers"} <= set(forbidden["forbidden_modules"])
    sources = forbidden["source_modules"]
    pure = [m for m in all_modules() if not covered(m, [VLLM_HOME])]
    exempt = {"screenspot_eval.__main__", "screenspot_eval.backends"}  # entry point, namespace
    missing = [m for m in pure if not covered(m, sources) and m not in exempt]
    assert missing == []


def test_the_run_layer_never_imports_backends_vllm() -> None:
    """run/ starts, shares, switches and scores engines through backends.engines only."""
    [contract] = [c for c in contracts() if VLLM_HOME in c.get("forbidden_modules", [])]
    assert contract["source_modules"] == ["screenspot_eval.run"]
    run_modules = [m for m in all_modules() if covered(m, ["screenspot_eval.run"])]
    for module in run_modules:
        source = (
            Path(screenspot_eval.__file__)
            .parent.joinpath(*module.split(".")[1:])
            .with_suffix(".py")
        )
        if source.is_file():
            assert VLLM_HOME not in source.read_text(), module


def test_no_module_imports_itself_through_others() -> None:
    """No import cycle anywhere in the package, lazy imports (inside functions) included: for
    every import ``a -> b``, no chain leads from ``b`` back to ``a`` (a strongly connected
    component of more than one module)."""
    import grimp

    graph = grimp.build_graph("screenspot_eval", cache_dir=None)
    cycles = set()
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                cycles.add(" -> ".join((module, *back)))
    assert sorted(cycles) == []
