"""Model archives at a URI (serve/model_source.py): fetched once into the cache, checked
against the manifest, and never half-made: a bad archive leaves no model folder."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

from gpt2onnx.runtime import DEFAULT_MODEL, ModelLoadError, UsageError, load
from gpt2onnx.serve import model_source
from ray_helpers import ArchiveServer


@pytest.fixture()
def files(tmp_path):
    folder = tmp_path / "www"
    folder.mkdir()
    server = ArchiveServer(folder)
    server.folder = folder
    yield server
    server.close()


def _models(cache) -> list:
    return sorted(p.name for p in (cache / "models").iterdir() if p.is_dir())


def test_a_tar_gz_is_fetched_once_and_runs_like_the_folder(files, tmp_path):
    shutil.make_archive(str(files.folder / "tiny"), "gztar", root_dir=DEFAULT_MODEL.parent, base_dir=DEFAULT_MODEL.name)
    uri = f"{files.url}/tiny.tar.gz"
    first = model_source.resolve(uri, tmp_path / "cache")
    assert model_source.resolve(uri, tmp_path / "cache") == first
    assert files.gets["/tiny.tar.gz"] == 1
    assert model_source.model_id(uri) == "tiny"
    fetched, shipped = load(first), load(DEFAULT_MODEL)
    assert fetched.generate("Once upon a time", max_new_tokens=12, do_sample=False).token_ids == shipped.generate("Once upon a time", max_new_tokens=12, do_sample=False).token_ids


def test_a_zip_with_the_files_at_its_root_works_from_a_file_uri(tmp_path):
    with zipfile.ZipFile(tmp_path / "m.zip", "w") as z:
        for path in DEFAULT_MODEL.iterdir():
            z.write(path, path.name)
    folder = model_source.resolve((tmp_path / "m.zip").as_uri(), tmp_path / "cache")
    assert load(folder).info.n_layer == load(DEFAULT_MODEL).info.n_layer


def _tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_a_changed_file_fails_its_hash_and_leaves_no_model(files, tmp_path):
    members = {f"m/{p.name}": p.read_bytes() for p in DEFAULT_MODEL.iterdir()}
    onnx = bytearray(members["m/model.onnx"])
    onnx[-1] ^= 1
    members["m/model.onnx"] = bytes(onnx)
    _tar(files.folder / "bad.tar.gz", members)
    with pytest.raises(ModelLoadError, match="sha256"):
        model_source.resolve(f"{files.url}/bad.tar.gz", tmp_path / "cache")
    assert _models(tmp_path / "cache") == []  # no half-made folder, no leftover download


def test_a_member_outside_the_folder_is_refused(files, tmp_path):
    _tar(files.folder / "evil.tar.gz", {"../escaped.txt": b"x", "m/manifest.json": b"{}"})
    with pytest.raises(ModelLoadError, match="could not be unpacked"):
        model_source.resolve(f"{files.url}/evil.tar.gz", tmp_path / "cache" / "in")
    assert not (tmp_path / "cache" / "escaped.txt").exists() and _models(tmp_path / "cache" / "in") == []


@pytest.mark.parametrize("name, error, message", [
    ("model.onnx", UsageError, "not an archive"),
    ("missing.tar.gz", ModelLoadError, "cannot fetch .*404"),
    ("empty.tar.gz", ModelLoadError, "holds no manifest.json"),
])
def test_bad_uris_get_one_line_errors(files, tmp_path, name, error, message):
    _tar(files.folder / "empty.tar.gz", {"readme.txt": b"no model here"})
    with pytest.raises(error, match=message) as caught:
        model_source.resolve(f"{files.url}/{name}", tmp_path / "cache")
    assert "\n" not in str(caught.value)


def test_paths_pass_through_untouched(tmp_path):
    assert model_source.resolve(None) is None
    assert model_source.resolve(str(tmp_path)) == str(tmp_path)
    assert model_source.model_id(None) == "gpt2onnx-default" and model_source.model_id(str(tmp_path / "gpt2")) == "gpt2"


def test_the_plain_server_fetches_a_uri_too_and_says_what_failed(files, tmp_path):
    done = subprocess.run([sys.executable, "-m", "gpt2onnx.cli", "serve", "--model", f"{files.url}/missing.tar.gz", "--port", "0"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "GPT2ONNX_CACHE": str(tmp_path)})
    assert done.returncode == 2 and done.stderr.startswith("gpt2onnx: error: cannot fetch") and len(done.stderr.strip().splitlines()) == 1
    assert files.gets["/missing.tar.gz"] == 1
