"""Packaging: one distribution whose import packages are gpt2onnx.cli,
gpt2onnx.export, gpt2onnx.runtime and gpt2onnx.desktop, mapped from the repo's
top-level folders, with nothing under generic top-level names; and the runtime
imports none of the others (nor the export stack)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IMPORT_CHECK = (
    "import importlib.util, gpt2onnx.runtime, gpt2onnx.export, gpt2onnx.desktop, gpt2onnx.export.random_model as r;"
    "import gpt2onnx.desktop.app, gpt2onnx.cli;"
    "assert all(importlib.util.find_spec(n) is None for n in ('runtime', 'export', 'desktop', 'cli'));"
    "assert (r.TOKENIZER_DIR / 'vocab.json').is_file();"
    "print(gpt2onnx.runtime.__file__)"
)
# Every module of the runtime, imported in a fresh interpreter: the exporter, the desktop
# app and the export stack stay out (the runtime's install has none of them).
RUNTIME_ALONE_CHECK = (
    "import pkgutil, sys, gpt2onnx.runtime as rt;"
    "names = [m.name for m in pkgutil.iter_modules(rt.__path__, 'gpt2onnx.runtime.')];"
    "[__import__(n) for n in names];"
    "heavy = ('gpt2onnx.export', 'gpt2onnx.desktop', 'gpt2onnx.cli', 'torch', 'transformers', 'optimum', 'PySide6');"
    "import argparse; rt.commands.add_parsers(argparse.ArgumentParser().add_subparsers());"
    "print(' '.join(names)); print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith(heavy))))"
)
# The shipped default model comes with the package and runs from there.
DEFAULT_MODEL_CHECK = (
    "from gpt2onnx.runtime import DEFAULT_MODEL, load;"
    "model = load(provider='cpu');"
    "assert model.folder == DEFAULT_MODEL;"
    "print(DEFAULT_MODEL); print(len(model.generate('Once upon a time', max_new_tokens=3, seed=0).token_ids))"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    source = shutil.copytree(REPO, root / "src", ignore=shutil.ignore_patterns(".venv", ".git", "*.egg-info", "build", "__pycache__", ".*cache*"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root / "dist"), str(source)],
        check=True,
        capture_output=True,
    )
    (path,) = (root / "dist").glob("gpt2onnx-*.whl")
    return path


def test_wheel_holds_the_four_packages_and_the_tokenizer(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "gpt2onnx/cli/__main__.py" in names
    for package in ("cli", "export", "runtime", "desktop"):
        assert f"gpt2onnx/{package}/__init__.py" in names
    for asset in ("vocab.json", "merges.txt", "LICENSE"):
        assert f"gpt2onnx/export/assets/gpt2-tokenizer/{asset}" in names
    assert "gpt2onnx/export/assets/calibration.txt" in names  # the int8 KV cache's calibration text
    for asset in ("vocab.json", "merges.txt"):  # the GPT-1-format BPE of random_model --gpt1
        assert f"gpt2onnx/export/assets/gpt1-tokenizer/{asset}" in names
    for name in ("model.onnx", "manifest.json", "tokenizer.json", "config.json", "generation_config.json", "training.json"):
        assert f"gpt2onnx/runtime/default_model/{name}" in names
    for dtype in ("float32", "float16", "int8"):  # the graphs that move KV-cache rows on the device
        assert f"gpt2onnx/runtime/graphs/kv_rows_{dtype}.onnx" in names
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"gpt2onnx", wheel.name.split("-py3")[0] + ".dist-info"}
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    entry_text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "gpt2onnx = gpt2onnx.cli:main" in entry_text
    assert "[gui_scripts]\ngpt2onnx-desktop = gpt2onnx.desktop.app:main" in entry_text


def test_installed_wheel_imports_from_outside_the_repo(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], check=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", IMPORT_CHECK], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(target))
    result = subprocess.run([sys.executable, "-c", DEFAULT_MODEL_CHECK], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    folder, tokens = result.stdout.split()
    assert folder.startswith(str(target)) and int(tokens) >= 1


def test_this_install_imports_from_outside_the_repo(tmp_path):
    result = subprocess.run([sys.executable, "-c", IMPORT_CHECK], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, at the top or inside a function (relative ones left out)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_runtime_imports_neither_the_exporter_nor_the_desktop_app(tmp_path):
    # In the source, lazy imports included: the export package imports the runtime, never the reverse.
    heavy = ("gpt2onnx.export", "gpt2onnx.desktop", "gpt2onnx.cli", "torch", "transformers", "optimum", "PySide6")
    for path in sorted((REPO / "runtime").glob("*.py")):
        bad = sorted(n for n in _imported_modules(path) if n.startswith(heavy))
        assert not bad, f"runtime/{path.name} imports {bad}"
    # And in a fresh interpreter, after importing every module and building the runtime's commands.
    result = subprocess.run([sys.executable, "-c", RUNTIME_ALONE_CHECK], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    imported, loaded = result.stdout.split("\n")[:2]
    assert {"gpt2onnx.runtime.commands", "gpt2onnx.runtime.model", "gpt2onnx.runtime.generator"} <= set(imported.split())
    assert loaded == "", f"importing the runtime loaded {loaded}"


def test_python_m_gpt2onnx_cli_is_the_command(tmp_path):
    result = subprocess.run([sys.executable, "-m", "gpt2onnx.cli", "--version"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("gpt2onnx "), result.stderr
    result = subprocess.run([sys.executable, "-m", "gpt2onnx.cli", "frobnicate"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
