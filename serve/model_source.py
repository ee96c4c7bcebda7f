"""Where a replica finds its model: a folder path, or a URI of the folder's archive.

Every node of a cluster must read the model. Either the folder sits on
storage every node mounts (a path), or it is an archive (.tar.gz, .tgz,
.tar, .zip) at a URI that smart_open reads (https://, s3://, gs://,
file://, ...). An archive is fetched once per node: the first replica on a
node takes a file lock, downloads, unpacks into a temporary folder, checks
every file against the manifest's sha256, then renames it into the cache;
the other replicas on that node wait for the lock and find it there.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from gpt2onnx.runtime.errors import ModelLoadError, UsageError
from gpt2onnx.runtime.contract import MANIFEST_FILE
from gpt2onnx.runtime.manifest import read_manifest, verify_files

CACHE_ENV = "GPT2ONNX_CACHE"
ARCHIVES = (".tar.gz", ".tgz", ".tar", ".zip")
CHUNK = 1 << 20


def is_uri(source: str) -> bool:
    """A source with a scheme (https://, s3://, file://) rather than a plain path."""
    return "://" in source


def model_id(source: str | None) -> str:
    """The id clients name a model by: the folder's (or archive's) name."""
    if source is None:
        return "gpt2onnx-default"
    if not is_uri(source):
        return Path(source).resolve().name
    name = source.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
    return next((name[: -len(e)] for e in ARCHIVES if name.lower().endswith(e)), name)


def default_cache() -> Path:
    """$GPT2ONNX_CACHE, else $XDG_CACHE_HOME/gpt2onnx, else ~/.cache/gpt2onnx."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpt2onnx"


def resolve(source: str | None, cache: str | Path | None = None) -> str | None:
    """The local folder for a model source: a path (or None, the shipped model) as
    it is, a URI fetched into the node's cache once (see the module docstring)."""
    if source is None or not is_uri(source):
        return source
    if not source.lower().split("?")[0].endswith(ARCHIVES):
        raise UsageError(f"{source} is not an archive: a model URI must name a {', '.join(ARCHIVES)} of an export folder")
    root = Path(cache) if cache else default_cache()
    models = root / "models"
    models.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(source.encode()).hexdigest()[:24]
    folder = models / key
    with open(models / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one download per node; the others wait here
        if not (folder / MANIFEST_FILE).is_file():
            _fetch(source, models, folder)
    return str(folder)


def _fetch(source: str, models: Path, folder: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=models))
    try:
        archive = work / ("model" + next(e for e in ARCHIVES if source.lower().split("?")[0].endswith(e)))
        _download(source, archive)
        unpacked = work / "unpacked"
        try:
            # tar's "data" filter: no member may land outside the folder or be a link out of it
            # or a device (zipfile strips such paths itself and takes no filter)
            tar = {} if archive.suffix == ".zip" else {"filter": "data"}
            shutil.unpack_archive(archive, unpacked, **tar)
        except (shutil.ReadError, OSError, ValueError, tarfile.TarError) as e:
            raise ModelLoadError(f"{source} could not be unpacked ({e}): it must be an archive of an export folder") from None
        top = _export_folder(unpacked, source)
        verify_files(top, read_manifest(top), check_hashes=True)
        if folder.exists():  # a half-made folder from a crash: the lock says nobody else is here
            shutil.rmtree(folder)
        top.rename(folder)  # atomic: the folder is whole or absent
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _download(source: str, target: Path) -> None:
    try:
        import smart_open
    except ImportError:
        raise UsageError(f"fetching {source} needs smart_open: pip install 'gpt2onnx[ray]'") from None
    try:
        with smart_open.open(source, "rb", compression="disable") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
    except ImportError as e:  # smart_open names the missing package for s3://, gs://, azure://
        raise UsageError(f"fetching {source} needs a package smart_open lacks here ({e}): pip install 'smart_open[s3,gcs,azure]'") from None
    except Exception as e:  # network, permission, missing object: every backend raises its own type
        raise ModelLoadError(f"cannot fetch {source} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'}): check the URI and that this node can reach it") from None


def _export_folder(unpacked: Path, source: str) -> Path:
    """The export folder inside an archive: its root, or its only folder."""
    if (unpacked / MANIFEST_FILE).is_file():
        return unpacked
    entries = [p for p in unpacked.iterdir()]
    if len(entries) == 1 and (entries[0] / MANIFEST_FILE).is_file():
        return entries[0]
    raise ModelLoadError(f"{source} holds no {MANIFEST_FILE} at its root or in its only folder: archive the export folder itself")
