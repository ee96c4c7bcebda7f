"""Ray Serve deployments of their own (after test_ray.py's is down).

Autoscaling, deployed the config-file way: `serve run` on a copy of
serve/ray-serve.yaml with the shipped model, 2 slots a replica and short
delays. From 1 replica, a sustained load brings a second one up; when the
load ends it goes back down to 1. The API key comes from the config's
runtime_env. And a replica that can't load its model fails the deployment
with the replica's one-line error.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from gpt2onnx.runtime import DEFAULT_MODEL
from ray_helpers import Load, RayServe, replica_pids, wait_for
from serve_helpers import free_port
from test_ray import CONFIG

# Slow tier (pytest -m slow): each test starts a Ray Serve deployment of its own and waits for it to scale or fail (~45 s).
pytestmark = pytest.mark.slow

KEY = "autoscale-test-key"


def test_a_sustained_load_adds_a_replica_and_its_end_removes_it(tmp_path):
    config = yaml.safe_load(CONFIG.read_text())
    port = free_port()
    config["http_options"] = {"host": "127.0.0.1", "port": port}
    app = config["applications"][0]
    app["args"] = {"slots": 2, "threads": 1}  # the shipped model
    app["runtime_env"] = {"env_vars": {"GPT2ONNX_API_KEY": KEY}}
    deployment = app["deployments"][0]
    deployment.update(max_ongoing_requests=2, max_queued_requests=64, ray_actor_options={"num_cpus": 1})
    deployment["autoscaling_config"] = {
        "min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 2,
        "metrics_interval_s": 0.5, "look_back_period_s": 2, "upscale_delay_s": 1, "downscale_delay_s": 4,
    }
    path = tmp_path / "autoscale.yaml"
    path.write_text(yaml.safe_dump(config))
    ray = RayServe.config(path, port)
    try:
        assert len(replica_pids()) == 1
        assert httpx.get(f"{ray.url}/v1/models").status_code == 401  # the key from runtime_env guards /v1
        load = Load(ray.url, clients=6, max_tokens=96, api_key=KEY)
        up = wait_for(lambda: len(replica_pids()) == 2, 90)
        wait_for(lambda: len(load.replicas) == 2, 60, poll=0.1)  # the new replica takes requests
        load.stop()
        stopped = time.monotonic()
        down = wait_for(lambda: len(replica_pids()) == 1, 90)
        print(f"\nautoscaling: 1 -> 2 replicas {up:.1f} s into the load, 2 -> 1 {down:.1f} s after it; "
              f"{load.done} requests, {len(load.failures)} failed attempts, replicas {dict(load.replicas)}")
        assert load.failures == [] and load.gave_up == 0
        assert time.monotonic() - stopped < 90
    finally:
        assert ray.stop() == 0, ray.output()[-3000:]
    wait_for(lambda: not replica_pids(), 60)


def test_a_replica_that_cannot_load_fails_the_deployment_in_one_line(tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(DEFAULT_MODEL, broken)
    onnx = bytearray((broken / "model.onnx").read_bytes())
    onnx[-1] ^= 1  # the driver's quick check (no hashing) passes; the replica's load checks the sha256
    (broken / "model.onnx").write_bytes(bytes(onnx))
    done = subprocess.run([sys.executable, "-m", "gpt2onnx.cli", "serve", "--ray", "--model", str(broken), "--port", str(free_port())],
                          capture_output=True, text=True, timeout=300)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and last.startswith("gpt2onnx: error: ") and "does not match its sha256" in last, done.stderr[-2000:]
    wait_for(lambda: not replica_pids(), 60)
