"""The clients' environments: the pinned versions, where each environment lives under .cache,
and their set-up (a venv with pip for the Python clients, npm for the Node SDK), reused while
their pins match."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "programs"
CACHE = REPO / ".cache"
VENV = CACHE / "clients-venv"
NODE = CACHE / "clients-node"
LLM_HOME = CACHE / "clients-llm"  # the llm CLI's private LLM_USER_PATH

PYTHON_PINS = {"openai": "3.63.0", "langchain-openai": "1.8.1", "litellm": "1.110.2", "llm": "0.36", "guidance": "0.3.1"}
NODE_PINS = {"openai": "7.60.0"}
# What else the report names: the libraries the pinned clients pulled in that shape their requests.
ALSO_RECORDED = ("langchain-core", "httpx", "pydantic", "llguidance")


def _pins_file(folder: Path) -> Path:
    return folder / ".pins.json"


def python_env() -> dict[str, str]:
    """.cache/clients-venv with PYTHON_PINS installed (made once, remade when the pins change);
    the installed versions of the pins and ALSO_RECORDED."""
    wanted = {"python": sys.version.split()[0], **PYTHON_PINS}
    if not (_pins_file(VENV).is_file() and json.loads(_pins_file(VENV).read_text()) == wanted):
        print(f"clients: making {VENV.relative_to(REPO)} ({', '.join(f'{k}=={v}' for k, v in PYTHON_PINS.items())})", flush=True)
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        with open(CACHE / "clients-pip.log", "w") as log:
            subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
                            *(f"{k}=={v}" for k, v in PYTHON_PINS.items())], check=True, stdout=log, stderr=subprocess.STDOUT)
        _pins_file(VENV).write_text(json.dumps(wanted))
    names = [*PYTHON_PINS, *ALSO_RECORDED]
    probe = "import importlib.metadata as m, json, sys; print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    out = subprocess.run([str(VENV / "bin" / "python"), "-c", probe, *names], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def node_env() -> dict[str, str]:
    """.cache/clients-node with NODE_PINS installed by npm (reused while the pins match); node's and
    the SDK's versions."""
    wanted = dict(NODE_PINS)
    installed = NODE / "node_modules" / "openai" / "package.json"
    if not (_pins_file(NODE).is_file() and json.loads(_pins_file(NODE).read_text()) == wanted and installed.is_file()):
        print(f"clients: npm install into {NODE.relative_to(REPO)} ({', '.join(f'{k}@{v}' for k, v in NODE_PINS.items())})", flush=True)
        NODE.mkdir(parents=True, exist_ok=True)
        package = {"name": "gpt2onnx-clients", "private": True, "type": "module", "dependencies": NODE_PINS}
        (NODE / "package.json").write_text(json.dumps(package, indent=1) + "\n")
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE, check=True)
        _pins_file(NODE).write_text(json.dumps(wanted))
    # ESM resolves imports from the script's folder, so the script runs from beside node_modules.
    shutil.copy(PROGRAMS / "openai_node.mjs", NODE / "openai_node.mjs")
    node = subprocess.run(["node", "--version"], check=True, capture_output=True, text=True).stdout.strip()
    return {"node": node.lstrip("v"), "openai": json.loads(installed.read_text())["version"]}
