"""The models on disk: the random checkpoint and each contender's build of it,
kept in --work and reused while what they were built from is unchanged."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from .contenders import REGISTRY, Unavailable
from .plan import Plan


class Cache:
    """Models built in --work, each reused while its key (what it was built from) is unchanged."""

    def __init__(self, root: Path):
        self.root = root
        self.index = root / "bench-cache.json"
        self.keys = json.loads(self.index.read_text()) if self.index.is_file() else {}

    def get(self, name: str, key: dict, build) -> tuple[Path, float | None]:
        """The folder `name`, built by build(folder) unless cached with the same key; (folder, build seconds or None)."""
        folder = self.root / name
        if self.keys.get(name) == key and folder.is_dir():
            print(f"  {name}: cached in {folder}", flush=True)
            return folder, None
        shutil.rmtree(folder, ignore_errors=True)
        print(f"  {name}: building in {folder} ...", flush=True)
        start = time.perf_counter()
        build(folder)
        seconds = time.perf_counter() - start
        self.keys[name] = key
        self.index.write_text(json.dumps(self.keys, indent=1))
        return folder, seconds


def versions(*names: str) -> dict:
    """Installed versions of the named distributions (those installed only)."""
    from gpt2onnx.export.manifest import package_versions

    return package_versions(names)


def build_models(work: Path, plan: Plan, names: list[str]) -> tuple[dict[str, Path], dict, dict]:
    """The checkpoint and each named contender's model; returns (folders by contender, build seconds
    or None if cached, {contender: why it can't run here} for those left out)."""
    cache = Cache(work)
    # Every package an export's output could depend on: an upgrade rebuilds everything.
    pkg = versions("torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime-gpu", "onnxruntime", "accelerate")
    checkpoint_key = {"shape": plan.shape, "seed": 0, **pkg}

    def make_checkpoint(folder):
        from gpt2onnx.export.random_model import make_random_gpt2

        make_random_gpt2(folder, seed=0, **plan.shape)

    seconds, folders, unavailable = {}, {}, {}
    checkpoint, seconds["checkpoint"] = cache.get("checkpoint", checkpoint_key, make_checkpoint)
    for name in names:
        contender = REGISTRY[name]
        if not contender.builds:
            folders[name] = checkpoint
            continue
        try:
            folders[name], seconds[name] = cache.get(name, contender.cache_key(checkpoint_key), lambda folder, c=contender: c.build(checkpoint, folder))
        except Unavailable as e:  # llama.cpp where it can't be built: say why and go on
            unavailable[name] = str(e)
            print(f"  {name}: left out: {e}", flush=True)
    return folders, seconds, unavailable
