"""The server under test: `gpt2onnx serve` on the shipped model and a free loopback port, on the
work tree's code or a commit's (server_tree), started once it answers /health and stopped."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .envs import CACHE, REPO

READY_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_tree(rev: str) -> tuple[Path, str]:
    """Commit REV's gpt2onnx packages (cli, export, runtime, serve: the shipped model too), unpacked
    once into .cache/clients-server/SHA/gpt2onnx; with that folder on PYTHONPATH the server runs the
    commit's code, whatever the work tree holds. Returns the folder and the commit's short hash."""
    git = ["git", "-C", str(REPO)]
    sha = subprocess.run([*git, "rev-parse", f"{rev}^{{commit}}"], check=True, capture_output=True, text=True).stdout.strip()
    root = CACHE / "clients-server" / sha[:12]
    if not (root / ".unpacked").is_file():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        archive = subprocess.Popen([*git, "archive", "--prefix=gpt2onnx/", sha, "cli", "export", "runtime", "serve"], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(root)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            raise RuntimeError(f"git archive {sha} failed")
        (root / ".unpacked").touch()
    return root, sha[:12]


def work_tree_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def start_server(port: int, log: Path, tree: Path | None = None) -> subprocess.Popen:
    """`gpt2onnx serve` on the shipped model, with this repository's .venv (this interpreter without
    one): the work tree's code, or that of `tree` (server_tree)."""
    python = REPO / ".venv" / "bin" / "python"
    command = [str(python) if python.exists() else sys.executable, "-m", "gpt2onnx.cli"]
    env = {k: v for k, v in os.environ.items() if k != "GPT2ONNX_API_KEY"}
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.Popen([*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + READY_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited {proc.returncode}: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the server did not answer /health in {READY_S} s")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
