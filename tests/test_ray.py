"""`gpt2onnx serve --ray` as clients meet it: a real Ray instance on 127.0.0.1 with 2
replicas of the shipped model, fetched from an archive URI, and the official
`openai` client.

Greedy answers equal the single-process server's, the archive is fetched once
for the node, 200 requests spread over both replicas with zero errors, and a
replica killed with SIGKILL under load is restarted while its in-flight
requests fail cleanly and their retries succeed. The failover test runs last:
it is the only one that disturbs the deployment. Autoscaling and a failed
deployment are in test_ray_deployments.py (deployments of their own).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from gpt2onnx.runtime import DEFAULT_MODEL
from gpt2onnx.runtime.manifest import read_manifest, verify_files
from gpt2onnx.serve import ray_app
from gpt2onnx.serve.ray_app import BuildArgs, Gpt2OnnxReplica
from ray_helpers import NO_EOS, ArchiveServer, Load, RayServe, replica_pids, wait_for
from serve_helpers import Server

MODEL = "gpt2onnx-default"
ARCHIVE = f"/{MODEL}.tar.gz"
CLI = [sys.executable, "-m", "gpt2onnx.cli", "serve"]
CONFIG = Path(__file__).resolve().parents[1] / "serve" / "ray-serve.yaml"


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("archives")
    shutil.make_archive(str(folder / MODEL), "gztar", root_dir=DEFAULT_MODEL.parent, base_dir=DEFAULT_MODEL.name)
    files = ArchiveServer(folder)
    yield files
    files.close()


@pytest.fixture(scope="module")
def cluster(archive, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    ray = RayServe.cli("--replicas", "2", "--threads", "1", "--slots", "4", "--model", archive.url + ARCHIVE, env={"GPT2ONNX_CACHE": str(cache)})
    ray.cache = cache
    yield ray
    assert ray.stop() == 0, ray.output()[-3000:]
    wait_for(lambda: not replica_pids(), 60)  # Ctrl-C took every replica down with it


@pytest.fixture(scope="module")
def single():
    s = Server("--slots", "4", "--threads", "1")
    yield s
    assert s.stop() == 0


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)


def _answers(client: openai.OpenAI) -> list:
    out = []
    for prompt in ("Once upon a time", "The secret of happiness is", "Q: Why?\nA:"):
        plain = client.completions.create(model=MODEL, prompt=prompt, max_tokens=24, temperature=0, logprobs=2, echo=True)
        stream = client.completions.create(model=MODEL, prompt=prompt, max_tokens=24, temperature=0, stream=True)
        out.append(([c.model_dump(exclude={"index"}) for c in plain.choices], plain.usage.model_dump(), "".join(c.choices[0].text for c in stream if c.choices)))
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "What is the meaning of life?"}], max_tokens=30, temperature=0)
    out.append((chat.choices[0].message.content, chat.choices[0].finish_reason))
    return out


@pytest.mark.slow  # the module's Ray instance (~15 s to start) and a plain server
def test_openai_client_through_ray_equals_the_single_server(cluster, single):
    through_ray, alone = _answers(_client(cluster.url)), _answers(_client(single.url))
    assert through_ray == alone
    assert all(text for *_, text in through_ray[:3])


@pytest.mark.slow  # the module's Ray instance
def test_the_archive_is_fetched_once_for_the_node_and_checked(cluster, archive):
    assert archive.gets[ARCHIVE] == 1  # the driver and both replicas share this node's cache
    folders = [p for p in (cluster.cache / "models").iterdir() if p.is_dir()]
    assert len(folders) == 1
    verify_files(folders[0], read_manifest(folders[0]), check_hashes=True)
    assert cluster.health()["model"] == MODEL


@pytest.mark.slow  # the module's Ray instance
def test_200_requests_spread_over_both_replicas_with_zero_errors(cluster):
    client = _client(cluster.url)
    ids = cluster.replicas_by_health(2)
    assert len(ids) == 2

    def one(i: int) -> str:
        raw = client.completions.with_raw_response.create(model=MODEL, prompt=f"Request {i}:", max_tokens=16, temperature=0)
        assert raw.parse().choices[0].text
        return raw.headers["x-gpt2onnx-replica"]

    with ThreadPoolExecutor(16) as pool:
        served = list(pool.map(one, range(200)))
    counts = {replica: served.count(replica) for replica in set(served)}
    print(f"\n200 requests over the replicas: {counts}")
    assert set(counts) == set(ids)
    assert min(counts.values()) >= 40, counts  # both carry a real share, not a trickle


@pytest.mark.slow  # seven CLI processes, each importing Ray (~8 s)
def test_cli_refuses_bad_input_in_one_line_before_ray_starts(tmp_path):
    def refused(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert done.stderr.startswith("gpt2onnx: error: ")
        return done

    running = replica_pids()  # the module's deployment, if it is up
    assert refused("--ray", "--model", str(tmp_path / "nowhere")).returncode == 2
    assert "--replicas must be >= 1" in refused("--ray", "--replicas", "0").stderr
    assert "MIN:MAX" in refused("--ray", "--autoscale", "3:1").stderr
    assert "exclude each other" in refused("--ray", "--replicas", "2", "--autoscale", "1:2").stderr
    assert "needs --ray" in refused("--autoscale", "1:2").stderr
    assert "not an archive" in refused("--ray", "--model", "https://example.invalid/model.onnx").stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        done = refused("--ray", "--port", str(busy.getsockname()[1]))
        assert done.returncode == 1 and "cannot listen on 127.0.0.1" in done.stderr
    assert replica_pids() == running  # none of them started a replica


@pytest.mark.parametrize("name", ["ray-serve.yaml", "rayservice.yaml"])
def test_the_checked_in_deploy_configs_are_valid_and_matched_to_slots(name):
    config = yaml.safe_load((CONFIG.parent / name).read_text())
    if config.get("kind") == "RayService":  # KubeRay embeds Serve's config as a string
        config = yaml.safe_load(config["spec"]["serveConfigV2"])
    app = ServeDeploySchema.model_validate(config).applications[0]
    assert app.import_path == "gpt2onnx.serve.ray_app:build"
    args = BuildArgs.model_validate(app.args)
    deployment = app.deployments[0]
    assert deployment.name == Gpt2OnnxReplica.name
    built = ray_app.deployment(args)  # what `serve run ...:build model=...` gets without a config
    assert built.max_ongoing_requests == args.slots and built.ray_actor_options["num_cpus"] == args.threads
    assert deployment.max_ongoing_requests == args.slots == deployment.autoscaling_config["target_ongoing_requests"]
    assert deployment.ray_actor_options.num_cpus == args.threads
    with pytest.raises(Exception, match="extra"):
        BuildArgs.model_validate({**app.args, "slotz": 4})  # a misspelt arg is an error, not ignored


@pytest.mark.slow  # kills a replica and waits for its restart (~16 s)
def test_failover_a_killed_replica_is_restarted_and_retries_succeed(cluster):
    before = cluster.replicas_by_health(2)
    load = Load(cluster.url, clients=8, max_tokens=96)
    wait_for(lambda: load.done >= 16, 60, poll=0.05)  # steady: both replicas busy
    # A stream of our own names its replica: that one dies while the stream (and its share of the load) runs.
    probe = _client(cluster.url).completions.with_raw_response.create(model=MODEL, prompt="Long ago", max_tokens=200, temperature=0, stream=True, logit_bias=NO_EOS)
    victim_id = probe.headers["x-gpt2onnx-replica"]
    stream = iter(probe.parse())
    assert next(stream).choices[0].text
    os.kill(before[victim_id], signal.SIGKILL)
    with pytest.raises(openai.APIError) as lost:
        for _ in stream:
            pass
    assert lost.value.code == "replica_lost" and "retry" in lost.value.message
    restarted = wait_for(lambda: len(replica_pids() - {before[victim_id]}) == 2, 120)
    done_at_restart = load.done
    wait_for(lambda: load.done >= done_at_restart + 40, 120, poll=0.1)  # the load goes on over the restarted replica
    load.stop()
    after = cluster.replicas_by_health(2)
    print(f"\nfailover: restarted in {restarted:.1f} s; load: {load.done} requests done, {len(load.failures)} failed attempts "
          f"{sorted(set(load.failures))}, {load.retried_ok} succeeded on retry, {load.gave_up} gave up; replicas {dict(load.replicas)}")
    assert len(after) == 2 and victim_id not in after and before[victim_id] not in after.values()
    # Clean failures only: a 503 (plain) or a stream's error event, both saying "retry"; no timeout, no cut connection.
    assert {(name, status, code) for name, status, code in load.failures} <= {("InternalServerError", 503, "replica_lost"), ("APIError", None, "replica_lost")}
    assert load.gave_up == 0 and load.retried_ok == len(load.failures)  # every failed request succeeded on its first retry
    new = next(i for i in after if i not in before)
    assert load.replicas[new] > 0  # the restarted replica took its share
