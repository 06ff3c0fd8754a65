"""The package's layers, checked on the source: a module imports only from its own layer or the
ones below (anywhere in the file, function-level imports included), and module-level imports
form no cycle. The layers, bottom up (see docs/ARCHITECTURE.md):

foundations (errors, io, paths, presets, progress, blas, flops, devices) <- envs <- data (data, tracking,
experts) <- learning (training loop, frames, augmentation, language) <- models (atm) <- agents (the interface, ATM's agent, the baselines) <- bench (runner,
evaluation, tables) <- commands (cli).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The installed package maps these folders onto one namespace (pyproject's package-dir).
ROOTS = {"atm_bench": REPO / "atm_bench", "atm_bench.envs": REPO / "envs", "atm_bench.baselines": REPO / "baselines"}
LAYERS = (
    ("foundations", ("atm_bench", "atm_bench.errors", "atm_bench.io", "atm_bench.paths", "atm_bench.presets",
                     "atm_bench.progress", "atm_bench.blas", "atm_bench.flops", "atm_bench.devices")),
    ("envs", ("atm_bench.envs",)),
    ("data", ("atm_bench.data", "atm_bench.tracking", "atm_bench.experts")),
    ("learning", ("atm_bench.learning",)),
    ("models", ("atm_bench.atm",)),
    ("agents", ("atm_bench.agents", "atm_bench.atm.agent", "atm_bench.baselines")),
    ("bench", ("atm_bench.bench", "atm_bench.tables")),
    ("commands", ("atm_bench.commands", "atm_bench.cli", "atm_bench.__main__")),
)


def modules() -> dict[str, Path]:
    found = {}
    for package, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            parts = [p for p in path.relative_to(root).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def layer(module: str) -> int:
    """Index of the layer whose longest prefix matches `module`."""
    best = max(((len(prefix), i) for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
                if module == prefix or module.startswith(prefix + ".")), default=None)
    assert best is not None, f"{module} is in no layer: add it to LAYERS and docs/ARCHITECTURE.md"
    return best[1]


def imports(module: str, path: Path, top_only: bool) -> list[tuple[str, int]]:
    """(imported atm_bench module, line) for each import in the file (or only its module-level ones)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nodes = tree.body if top_only else list(ast.walk(tree))
    known = modules()
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # `from package import submodule` imports the submodule
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        out += [(name, node.lineno) for name in names if name == "atm_bench" or name.startswith("atm_bench.")]
    return out


def test_every_import_points_down_or_sideways():
    violations = []
    for module, path in modules().items():
        for target, line in imports(module, path, top_only=False):
            if layer(target) > layer(module):
                violations.append(f"{os.path.relpath(path, REPO)}:{line} ({LAYERS[layer(module)][0]}) imports {target} "
                                  f"({LAYERS[layer(target)][0]})")
    assert not violations, "imports up the layers:\n" + "\n".join(violations)


def test_module_level_imports_have_no_cycle():
    known = modules()
    graph = {m: {t for t, _ in imports(m, p, top_only=True) if t in known and t != m} for m, p in known.items()}
    state: dict[str, int] = {}  # 1 = on the path, 2 = done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path + [module, target]
            if target not in state and (cycle := visit(target, path + [module])):
                return cycle
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [])
            assert cycle is None, "import cycle: " + " -> ".join(cycle[cycle.index(cycle[-1]):])


def test_the_layer_check_sees_a_violation(tmp_path, monkeypatch):
    """The check is not vacuous: an env module importing a model is reported."""
    fake = tmp_path / "envs"
    fake.mkdir()
    (fake / "bad.py").write_text("def f():\n    from atm_bench.atm.policy import TrackGuidedPolicy\n")
    monkeypatch.setitem(ROOTS, "atm_bench.envs", fake)
    try:
        test_every_import_points_down_or_sideways()
    except AssertionError as error:
        assert "envs/bad.py:2 (envs) imports atm_bench.atm.policy (models)" in str(error)
    else:
        raise AssertionError("the layer check missed an env importing a model")


def test_the_cli_parser_builds_without_torch_or_the_simulator():
    """Handlers import what they run; building the parser (every `--help`, every bad argument)
    must stay instant. A command module importing the runner at registration once made `atm-bench
    --help` take 2.7 s instead of 0.2 s."""
    import subprocess
    import sys

    code = ("import sys; from atm_bench.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'mujoco', 'robosuite', 'libero', 'h5py') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
