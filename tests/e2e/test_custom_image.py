"""A group's own runner image on real pods (issue #15): examples/custom-image built FROM the runner
image (its Dockerfile, as the README tells a group to), loaded into the kind nodes as a registry would
serve it, and named in ``spec.image`` by a filter that imports the group's module ``snlc``, which the
runner image lacks. The operator runs the runner pod in that image and records it in status.image;
the filter's accepted alerts are the ones the group's code picks, computed here from the same alerts.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid

import fastavro
import pytest

from alertfilter.codecs import read_container

from .conftest import (ROOT, apply_filter, committed_to_end, condition, end_offset, filter_manifest, produce_batch,
                       read, wait_for)

IMAGE = "localhost/e2e/snlc-runner:1.0"
SOURCE = '''import snlc


def rising_source(alert):
    history = [p["psfFlux"] for p in alert["prvDiaSources"] or []]
    return snlc.rising([*history, alert["diaSource"]["psfFlux"]], min_points=3)
'''


def _locked(cmd: list[str]) -> list[str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from images.conftest import locked  # the shared engine's lock, unless this run holds it already

    return locked(cmd)


@pytest.fixture(scope="module")
def group_image(devstack) -> str:
    """The example group image, built from the runner image the stack runs and loaded into kind."""
    runner = "alertfilter-runner:0.1.0"
    build = ["docker", "build", "-q", "--build-arg", f"RUNNER_IMAGE={runner}", "-t", IMAGE,
             str(ROOT / "examples" / "custom-image")]  # fmt: skip
    # the legacy builder, as hack/build-images.sh: BuildKit would pull the `# syntax=` frontend image
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    r = subprocess.run(_locked(build), capture_output=True, text=True, timeout=1200, env=env)
    assert r.returncode == 0, f"docker build of examples/custom-image failed:\n{r.stderr[-3000:]}"
    r = subprocess.run(_locked(["bash", str(ROOT / "hack" / "kind-cluster.sh"), "load", IMAGE]),
                       capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert r.returncode == 0, f"loading {IMAGE} into kind failed:\n{r.stderr[-3000:]}"
    return IMAGE


def test_the_runner_image_refuses_the_group_s_import_at_apply(devstack, namespace):
    _, cp, _ = devstack
    r = cp.kubectl("apply", "-n", namespace, "-f", "-", input=filter_manifest("no-image", SOURCE), check=False)
    assert r.returncode != 0
    assert "spec.source: line 1, column 1: module 'snlc' is not in the runner image" in r.stderr, r.stderr


def test_a_filter_in_its_group_s_image_runs_the_group_s_code(devstack, namespace, alerts_dir, group_image):
    st, cp, _ = devstack
    pool = st["kafka_pool"]["bootstrap"]
    apply_filter(cp, namespace, "rising", SOURCE, image=group_image, startFrom="earliest")
    status = cp.get_json("alertfilter", "rising", "-n", namespace)["status"]
    assert status["image"] == group_image
    pods = cp.get_json("pods", "-n", namespace, "-l", "alerts.lsst.io/filter=rising")["items"]
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {group_image}
    assert condition(cp, namespace, "rising", "RunnerReady")["status"] == "True"

    group, topic = status["names"]["consumerGroup"], status["inputTopic"]
    before = end_offset(pool, topic)
    visit = 11_000 + int(uuid.uuid4().int % 10**6)
    res = produce_batch(st, alerts_dir, copies=2, first_visit=visit)
    wait_for(lambda: end_offset(pool, topic) >= before + res.alerts and committed_to_end(pool, group, topic), 300,
             "the runner to reach the end of its input")  # fmt: skip

    # what the group's code picks from the same alerts, run here (the module from the example's source)
    sys.path.insert(0, str(ROOT / "examples" / "custom-image" / "snlc" / "src"))
    import snlc

    schema = fastavro.parse_schema(read_container(str(alerts_dir / "rubin-v10_0-real-20.avro"))[0])

    def decode(value: bytes) -> dict:
        return fastavro.schemaless_reader(io.BytesIO(value[5:]), schema, None)

    ids = range(visit * 1000, visit * 1000 + res.alerts)  # produce_batch's diaSourceIds
    ours = [a for a in map(decode, (m.value() for m in read(pool, "alerts"))) if a["diaSourceId"] in ids]
    want = {a["diaSourceId"] for a in ours if snlc.rising(
        [*(p["psfFlux"] for p in a["prvDiaSources"] or []), a["diaSource"]["psfFlux"]], min_points=3)}  # fmt: skip
    got = {a["diaSourceId"] for a in map(decode, (m.value() for m in read(pool, f"{namespace}.rising")))
           if a["diaSourceId"] in ids}  # fmt: skip
    assert 0 < len(want) < len(ours), "the alerts do not tell picking from accepting all"
    assert len(ours) == res.alerts
    assert got == want
