"""The package's layers point one way: no module imports a higher layer, no modules import each other in a circle,
and loading a model to diagnose or serve never loads the training code."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "ecgllm"

# Bottom to top; a module may import its own layer and those below it.
LAYERS = [
    ("base", ["ecgllm", "errors", "utils", "configuration_utils", "modeling_utils"]),
    ("data and statistics", ["data", "rhythm", "evaluation", "plots", "examples"]),
    ("encoder", ["encoder"]),
    ("ECG-LLM", ["llm"]),
    ("inference", ["inference"]),
    ("run folders", ["runs"]),
    ("serving", ["serving"]),
    ("command line", ["cli"]),
]
LEVEL = {part: level for level, (_, parts) in enumerate(LAYERS) for part in parts}


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def level_of(module: str) -> int:
    parts = module.split(".")
    return LEVEL[parts[1] if len(parts) > 1 else "ecgllm"]


def imports_of(path: Path) -> set[str]:
    """Every ecgllm module this file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("ecgllm")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ecgllm"):
            for alias in node.names:  # `from ecgllm.llm import x` names a module when x is one
                candidate = f"{node.module}.{alias.name}"
                is_module = (SOURCE.parent / Path(*candidate.split("."))).with_suffix(".py").exists() or \
                    (SOURCE.parent / Path(*candidate.split("."))).is_dir()
                found.add(candidate if is_module else node.module)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in SOURCE.rglob("*.py")}


def test_every_module_has_a_layer(graph):
    unplaced = [m for m in graph if (m.split(".")[1] if "." in m else "ecgllm") not in LEVEL]
    assert unplaced == [], "add them to LAYERS"


def test_no_import_points_up_a_layer(graph):
    upward = [f"{module} ({LAYERS[level_of(module)][0]}) imports {target} ({LAYERS[level_of(target)][0]})"
              for module, targets in graph.items() for target in targets if level_of(target) > level_of(module)]
    assert upward == []


def test_no_import_cycle(graph):
    # Packages import their own modules through __init__ only for re-exports; a module importing its own package's
    # __init__ is not a cycle of code, so edges into a package's __init__ from inside it are left out.
    edges = {m: {t for t in targets if t in graph and not (m.startswith(t + ".") or t == m)}
             for m, targets in graph.items()}
    cycles, index, low, stack, on_stack = [], {}, {}, [], set()

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert cycles == []


def test_the_layering_test_sees_a_violation(graph, tmp_path):
    """The checks above can fail: an upward import written into a model file is caught."""
    fake = tmp_path / "modeling_fake.py"
    fake.write_text("def f():\n    from ecgllm.inference.diagnose import diagnose\n")
    targets = imports_of(fake)
    assert targets == {"ecgllm.inference.diagnose"} and level_of("ecgllm.inference.diagnose") > level_of("ecgllm.llm")


def test_diagnose_and_serve_load_no_training_code():
    code = ("import sys; import ecgllm.cli, ecgllm.runs.layout, ecgllm.inference.batch, ecgllm.serving.app; "
            "ecgllm.cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m.endswith('training') or m in ('ecgllm.runs.job', 'accelerate')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
