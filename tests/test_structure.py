"""The package's shape: layers that only point down, no import cycles, a runtime free of
torch and gradio, a CLI whose every option shows its default, `python -m gansample`."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Modules above the runtime: they may import it, never the reverse.
# (The __main__ modules are entry points: `python -m gansample`, and torchrun's
# `-m gansample.training`, which is `gansample train`.)
UPPER = {"gansample.cli", "gansample.commands", "gansample.ui", "gansample.__main__", "gansample.training.__main__"}
FORBIDDEN_IN_RUNTIME = ("torch", "gradio", "gansample.training", "gansample.ui", "gansample.cli",
                        "gansample.commands", "app")


def _module_files() -> dict[str, Path]:
    mods = {}
    for p in sorted((ROOT / "gansample").glob("*.py")):
        name = "gansample" if p.stem == "__init__" else f"gansample.{p.stem}"
        mods[name] = p
    for p in sorted((ROOT / "training").glob("*.py")):
        name = "gansample.training" if p.stem == "__init__" else f"gansample.training.{p.stem}"
        mods[name] = p
    return mods


def _imports(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports (function-level imports included, TYPE_CHECKING blocks
    excluded), resolved to absolute names."""
    tree = ast.parse(path.read_text())
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for b in node.body for n in ast.walk(b))
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)  # `from . import x` names modules too
    return out


def _graph() -> dict[str, set[str]]:
    files = _module_files()
    return {m: {i for i in _imports(m, p) if i in files and i != m} for m, p in files.items()}


def test_runtime_never_imports_trainer_ui_torch_or_gradio() -> None:
    files = _module_files()
    bad = []
    for mod, path in files.items():
        if mod in UPPER or mod.startswith("gansample.training"):
            continue
        for imp in _imports(mod, path):
            if any(imp == f or imp.startswith(f + ".") for f in FORBIDDEN_IN_RUNTIME):
                bad.append(f"{mod} imports {imp}")
    assert not bad, bad


def test_trainer_never_imports_the_cli_or_ui() -> None:
    files = _module_files()
    bad = [f"{m} imports {i}" for m, p in files.items() if m.startswith("gansample.training") and m not in UPPER
           for i in _imports(m, p) if i.split(".")[:2] in (["gansample", "cli"], ["gansample", "commands"],
                                                            ["gansample", "ui"], ["gradio"])]
    assert not bad, bad


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if n.startswith("gansample.") and n.count(".") == 1 and n not in graph:
                continue
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    # `gansample/__init__` re-exports lazily (importlib on first attribute access), so
    # submodules importing names from the package do not form a cycle through it.
    graph["gansample"] = set()
    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_graph_walk_sees_real_edges() -> None:
    """The cycle and layer checks above would pass vacuously on an empty graph."""
    g = _graph()
    assert "gansample.generator" in g["gansample.output"] or "gansample.latents" in g["gansample.output"]
    assert "gansample.commands" in g["gansample.cli"]
    assert "gansample.output" in g["gansample.training.train"]


def test_version_imports_neither_numpy_nor_pillow() -> None:
    code = ("import sys; from gansample.cli import main\n"
            "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'PIL', 'onnxruntime')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_python_dash_m_and_version_defined_once() -> None:
    import gansample
    from gansample._version import __version__
    out = subprocess.run([sys.executable, "-m", "gansample", "--version"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"gansample {__version__}" == f"gansample {gansample.__version__}"
    assert 'version = "' not in (ROOT / "pyproject.toml").read_text().split("[project]")[1].split("[")[0]


def test_every_cli_option_has_help_showing_its_default() -> None:
    from gansample.cli import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    missing = []
    for name, p in sub.choices.items():  # type: ignore[attr-defined]
        fmt = p._get_formatter()
        for action in p._actions:
            if not action.option_strings or action.dest in ("help",) or name == "app":
                continue
            if not action.help:
                missing.append(f"{name} {action.option_strings[0]}: no help")
                continue
            shown = fmt._expand_help(action)  # what --help prints for this option
            if "default" not in shown and "(none:" not in shown and not action.required:
                missing.append(f"{name} {action.option_strings[-1]}: help does not show the default")
    assert not missing, missing


def test_api_errors_name_python_arguments_and_cli_errors_name_flags(tiny_model, tmp_path, capsys) -> None:
    from conftest import run_cli
    from gansample import Generator, GansampleError
    g = Generator(tiny_model, device="cpu")
    with pytest.raises(GansampleError, match=r"^psi: got 3"):
        g.sample(seeds=[0], psi=3)
    with pytest.raises(GansampleError, match=r"^batch_size: got 0"):
        Generator(tiny_model, device="cpu", batch_size=0)
    with pytest.raises(GansampleError, match=r"^n: got 0"):
        g.sample(n=0)
    from gansample import interpolate
    with pytest.raises(GansampleError, match=r"^walks: got 0"):
        interpolate(g, "1,2", walks=0)
    assert run_cli("generate", "-n", "2", "--trunc", "3", "--model", tiny_model, "--outdir", tmp_path) == 2
    assert "--trunc: got 3" in capsys.readouterr().err
    assert run_cli("interpolate", "--seeds", "1,2", "--grid", "0", "--model", tiny_model,
                   "--out", tmp_path / "w.gif") == 2
    assert "--grid: got 0" in capsys.readouterr().err


def test_library_logs_instead_of_printing(tiny_model, tmp_path, capsys, caplog) -> None:
    """The device note goes through logging.getLogger('gansample'); the API prints nothing."""
    import logging

    from gansample import Generator
    from gansample.session import _NOTED
    _NOTED.clear()
    log = logging.getLogger("gansample")
    cli_handlers = list(log.handlers)  # earlier in-process CLI runs configured the logger
    for h in cli_handlers:
        log.removeHandler(h)
    log.propagate = True
    with caplog.at_level(logging.INFO, logger="gansample"):
        Generator(tiny_model, device="auto").sample(seeds=[0, 1])
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    from gansample.session import cuda_status
    if not cuda_status()[0]:
        assert any("using the CPU" in r.getMessage() for r in caplog.records if r.name == "gansample")
    for h in cli_handlers:
        log.addHandler(h)
