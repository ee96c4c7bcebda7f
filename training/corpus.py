"""The default model's corpus: Debian's fortune cookies, fetched, parsed and split.

Debian's `fortunes` and `fortunes-min` packages (fortune-mod 1.99.1, BSD licence)
hold about 2.6 MB of English jokes, quotations and aphorisms, one cookie per
`%`-separated entry. They are fetched with `apt-get download` at a pinned
version, checked against their sha256, and unpacked with `dpkg -x`. Each cookie
is one document; a stable hash of its text puts one in twenty in the held-out
split, so the split never depends on file order or on the machine.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Pinned so a re-run trains on the same bytes (Debian bookworm).
PACKAGES = {
    "fortunes": ("1:1.99.1-7.3", "41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5"),
    "fortunes-min": ("1:1.99.1-7.3", "9eed5b45064e41133dae0967cf3a17588ad77c014fcc7bf1527fa3ea48e44d07"),
}
LICENCE = "BSD-3-Clause (fortune-mod; see /usr/share/doc/fortunes/copyright in the package)"
FORTUNE_DIR = "usr/share/games/fortunes"
# Pictures drawn with characters, not English text.
EXCLUDED_FILES = {"ascii-art"}
HELDOUT_EVERY = 20  # one cookie in twenty is held out


@dataclass(frozen=True)
class Corpus:
    """The cookies, split for training and evaluation."""

    train: list[str]  # documents the model learns from
    heldout: list[str]  # documents it never sees, for perplexity
    sources: dict  # package -> version and sha256 of the .deb


def fetch(cache: Path) -> Path:
    """Download and unpack the pinned packages into `cache` once; return the unpacked root."""
    root = cache / "unpacked"
    if (root / FORTUNE_DIR / "fortunes").exists():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        specs = [f"{name}={version}" for name, (version, _) in PACKAGES.items()]
        done = subprocess.run(["apt-get", "download", *specs], cwd=tmp, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"error: apt-get download {' '.join(specs)} failed: {done.stderr.strip().splitlines()[-1:]}")
        staging = Path(tmp) / "unpacked"
        for deb in sorted(Path(tmp).glob("*.deb")):
            subprocess.run(["dpkg", "-x", str(deb), str(staging)], check=True)
        shutil.move(str(staging), root)
    return root


def deb_hashes(cache: Path) -> dict:
    """sha256 of each downloaded .deb (kept for the provenance record)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(cache.glob("*.deb"))}


def cookies(root: Path) -> list[str]:
    """Every cookie of every English fortune file, in file-name order."""
    docs = []
    for path in sorted((root / FORTUNE_DIR).iterdir()):
        if path.suffix in {".dat", ".u8"} or path.is_symlink() or path.name in EXCLUDED_FILES:
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        for entry in text.split("\n%\n"):
            entry = "\n".join(line.rstrip() for line in entry.strip("\n%").splitlines()).strip("\n")
            if entry.strip():
                docs.append(entry)
    return docs


def is_heldout(doc: str) -> bool:
    """Stable split: a hash of the text, not its position, decides."""
    return int(hashlib.sha256(doc.encode("utf-8")).hexdigest(), 16) % HELDOUT_EVERY == 0


def load(cache: Path) -> Corpus:
    """Fetch (once), parse and split the corpus."""
    root = fetch(cache)
    docs = list(dict.fromkeys(cookies(root)))  # a few cookies appear in two files
    return Corpus(
        train=[d for d in docs if not is_heldout(d)],
        heldout=[d for d in docs if is_heldout(d)],
        sources={name: version for name, (version, _) in PACKAGES.items()},
    )
