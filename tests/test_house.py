"""The rules of the house: which room of the package may import which, checked by one static pass over the imports
of every module (function-level imports included). tests/test_boundaries.py loads the torch-free rooms."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "r1omni_edge"

# Floor 1-2: facts, plain data, config, prompt, safe outputs, media. Torch-free, importing only each other.
CORE = {"errors", "typed", "labels", "label_choice", "result", "recognition", "config", "prompt", "files", "media", "cpu",
        ""}
HEAVY = {"torch", "torchvision", "transformers", "timm", "accelerate", "peft", "trl"}
ENGINE_LIBS = {"onnxruntime", "tensorrt", "cuda"}
DEVICE_LIBS = {"cv2", "sounddevice", "starlette", "uvicorn", "paho"}
ANY = object()

# room -> (rooms it may import at module level, rooms it may import inside functions only, libraries it never
# imports). A room not named in the second set may not be imported inside functions either.
RULES: dict[str, tuple[set, set, set]] = {
    "core": (CORE, set(), HEAVY | ENGINE_LIBS | DEVICE_LIBS | {"ray"}),
    "bundle": (CORE, set(), HEAVY | ENGINE_LIBS | DEVICE_LIBS | {"ray"}),
    "datasets": (CORE, set(), HEAVY | ENGINE_LIBS | DEVICE_LIBS | {"ray"}),
    "evaluation": (CORE, set(), HEAVY | ENGINE_LIBS | DEVICE_LIBS | {"ray"}),
    "pipeline": (CORE, set(), HEAVY | ENGINE_LIBS | DEVICE_LIBS | {"ray"}),
    "engines": (CORE | {"bundle", "pipeline"}, set(), HEAVY | DEVICE_LIBS | {"ray"}),
    "model": (CORE | {"pipeline"}, set(), ENGINE_LIBS | DEVICE_LIBS | {"ray"}),
    "live": (CORE, set(), HEAVY | ENGINE_LIBS | {"ray"}),
    "open": (CORE | {"bundle", "pipeline"}, {"engines", "model"}, HEAVY | ENGINE_LIBS | DEVICE_LIBS | {"ray"}),
    "export": (CORE | {"bundle", "evaluation", "pipeline", "model", "engines"}, set(), DEVICE_LIBS | {"ray"}),
    "train": (CORE | {"datasets", "evaluation", "model"}, set(), ENGINE_LIBS | DEVICE_LIBS | {"ray"}),
    "synthetic": (CORE | {"model"}, set(), ENGINE_LIBS | DEVICE_LIBS | {"ray"}),
    "batch": (CORE | {"datasets", "evaluation", "open"}, set(), HEAVY | ENGINE_LIBS | DEVICE_LIBS),
    "http_service": (CORE | {"open", "live"}, set(), HEAVY | ENGINE_LIBS | {"ray"}),
    "cli": (ANY, ANY, set()),
}
ROOM_OF = {"bundle": "bundle", "datasets": "datasets", "evaluation": "evaluation", "pipeline": "pipeline",
           "engines": "engines", "model": "model", "live": "live", "open": "open", "export": "export",
           "train": "train", "synthetic": "synthetic", "batch": "batch", "http_service": "http_service",
           "cli": "cli"}


def room_of(module: str) -> str:
    """``r1omni_edge.engines.base`` -> ``engines``; a core module -> its own name (``""`` for the package)."""
    first = module.split(".")[1] if "." in module else ""
    return ROOM_OF.get(first, first)


def _is_module(name: str) -> bool:
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()


def _imports(source: str, module: str, is_package: bool):
    """(imported module or package name, inside a function) for each import statement of ``source``."""
    package = module if is_package else module.rpartition(".")[0]
    found = []

    def visit(node, inside: bool):
        for child in ast.iter_child_nodes(node):
            nested = inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, inside) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = (importlib.util.resolve_name("." * child.level + (child.module or ""), package)
                        if child.level else child.module or "")
                if base == "r1omni_edge":  # from r1omni_edge import x: the room x, or the package's own name
                    found.extend((f"r1omni_edge.{alias.name}" if _is_module(alias.name) else base, inside)
                                 for alias in child.names)
                else:
                    found.append((base, inside))
            visit(child, nested)

    visit(ast.parse(source), False)
    return found


def violations(sources: dict[str, tuple[str, bool]]) -> list[str]:
    """Every import that breaks ``RULES``: module name -> (its source, whether it is a package's __init__)."""
    found = []
    for module, (source, is_package) in sorted(sources.items()):
        room = room_of(module)
        kind = "core" if room in CORE else room
        top, inner, never = RULES[kind]
        for name, inside in _imports(source, module, is_package):
            if name.startswith("r1omni_edge"):
                target = room_of(name)
                if target == room or top is ANY:
                    continue
                if target in top or (inside and target in inner):
                    continue
                where = "inside a function" if inside else "at module level"
                rule = f"imports {target} only inside functions" if target in inner else f"never imports {target}"
                found.append(f"{module}: imports {name} {where}; {kind} {rule}")
            elif name.split(".")[0] in never:
                found.append(f"{module}: imports {name}; {kind} never imports it")
    return found


def package_sources() -> dict[str, tuple[str, bool]]:
    sources = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("r1omni_edge",) + path.relative_to(PACKAGE).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        sources[".".join(parts[:-1] if is_package else parts)] = (path.read_text(encoding="utf-8"), is_package)
    return sources


def test_every_room_imports_only_what_the_rules_allow():
    sources = package_sources()
    rooms = {room_of(module) for module in sources}
    assert rooms - CORE <= set(RULES), f"rooms without a rule: {sorted(rooms - CORE - set(RULES))}"
    assert violations(sources) == []


def test_the_rules_catch_a_forbidden_import():
    """The check can fail: each kind of break, written into a copy of a real module, is reported."""
    sources = package_sources()
    engine = sources["r1omni_edge.engines.base"]
    cases = {
        "from ..model import OmniModel\n": "r1omni_edge.engines.base: imports r1omni_edge.model at module level",
        "import torch\n": "r1omni_edge.engines.base: imports torch; engines never imports it",
        "def f():\n    from ..live.web import WebHub\n": "imports r1omni_edge.live.web inside a function",
    }
    for line, expected in cases.items():
        broken = dict(sources, **{"r1omni_edge.engines.base": (engine[0] + line, False)})
        assert any(expected in v for v in violations(broken)), (line, violations(broken))
    # the front door may open the PyTorch side inside a function, never at module level
    front = sources["r1omni_edge.open"]
    assert not violations({"r1omni_edge.open": ("def f():\n    from .model import TorchRecognizer\n", False)})
    assert violations({"r1omni_edge.open": (front[0] + "from .model import TorchRecognizer\n", False)})
    # nothing imports the command line
    assert violations({"r1omni_edge.batch.job": ("from ..cli.main import main\n", False)})
