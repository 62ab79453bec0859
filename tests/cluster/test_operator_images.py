"""A scientific runtime on a real API server (issue #15): the webhook refuses a filter that imports a
module the runner image lacks, at the line of the import; a filter's own image (spec.image) runs its
Deployment and is recorded in status.image; a pool's spec.allowedImages is enforced at apply."""

from __future__ import annotations

from typing import Any

from .operator_harness import alertfilter, apply_json, get, wait_for

GROUP_IMAGE = "registry.example.org/broker-images/snlc-runner:1.0"
PANDAS = "import math\n\n\ndef f(alert):\n    import pandas as pd\n    return True\n"
#: The operator's runner image in these tests: its default (the harness sets none).
RUNNER_IMAGE = "alertfilter-runner:0.1.0"


def _deployment_image(apiserver: Any, namespace: str, name: str) -> str | None:
    dep = get(apiserver, "deployment", f"af-{name}", namespace)
    return dep["spec"]["template"]["spec"]["containers"][0]["image"] if dep else None


def test_an_import_the_runner_image_lacks_is_refused_at_apply_with_its_line(apiserver, operator, pool, namespace):
    r = apply_json(apiserver, alertfilter("needs-pandas", PANDAS, pool=pool[0]), namespace, check=False)
    assert r.returncode != 0
    assert "spec.source: line 5, column 5: module 'pandas' is not in the runner image" in r.stderr, r.stderr
    assert "spec.image" in r.stderr
    assert get(apiserver, "alertfilter", "needs-pandas", namespace) is None


def test_a_filter_naming_its_own_image_runs_it_and_says_so(apiserver, operator, pool, namespace):
    apply_json(apiserver, alertfilter("own-image", PANDAS, pool=pool[0], image=GROUP_IMAGE), namespace)
    wait_for(lambda: _deployment_image(apiserver, namespace, "own-image") == GROUP_IMAGE, 60, "the group's image")
    wait_for(
        lambda: (get(apiserver, "alertfilter", "own-image", namespace).get("status") or {}).get("image") == GROUP_IMAGE,
        60,
        "status.image",
    )
    # back to the runner image: the webhook checks the imports again, so the source must change too
    r = apply_json(apiserver, alertfilter("own-image", PANDAS, pool=pool[0]), namespace, check=False)
    assert r.returncode != 0 and "module 'pandas'" in r.stderr, r.stderr
    source = "import numpy as np\n\ndef f(alert):\n    return bool(np.isfinite(alert['diaSource']['snr']))\n"
    apply_json(apiserver, alertfilter("own-image", source, pool=pool[0]), namespace)
    wait_for(lambda: _deployment_image(apiserver, namespace, "own-image") == RUNNER_IMAGE, 60, "the runner image")
    status = get(apiserver, "alertfilter", "own-image", namespace)["status"]
    wait_for(
        lambda: (
            (get(apiserver, "alertfilter", "own-image", namespace).get("status") or {}).get("image") == RUNNER_IMAGE
        ),
        60,
        f"status.image back to the runner image (status: {status})",
    )


def test_a_pool_s_allowed_images_are_enforced_at_apply(apiserver, operator, pool, namespace):
    pname, _ = pool
    apiserver.kubectl(
        "patch",
        "filterpool",
        pname,
        "--type=merge",
        "-p",
        '{"spec": {"allowedImages": ["registry.example.org/broker-images/"]}}',
    )
    r = apply_json(apiserver, alertfilter("evil", pool=pname, image="docker.io/evil/runner:1"), namespace, check=False)
    assert r.returncode != 0
    assert f"spec.image: 'docker.io/evil/runner:1' is not allowed in FilterPool '{pname}'" in r.stderr, r.stderr
    assert "'registry.example.org/broker-images/'" in r.stderr
    assert get(apiserver, "alertfilter", "evil", namespace) is None
    # a look-alike of the allowed prefix is no match
    r = apply_json(
        apiserver,
        alertfilter("lookalike", pool=pname, image="registry.example.org/broker-images-evil/x:1"),
        namespace,
        check=False,
    )
    assert r.returncode != 0 and "not allowed" in r.stderr
    apply_json(apiserver, alertfilter("trusted", pool=pname, image=GROUP_IMAGE), namespace)
    wait_for(lambda: _deployment_image(apiserver, namespace, "trusted") == GROUP_IMAGE, 60, "the allowed image")


def test_an_image_reference_that_is_no_reference_is_refused_by_the_schema(apiserver, operator, pool, namespace):
    r = apply_json(apiserver, alertfilter("spaces", pool=pool[0], image="not an image"), namespace, check=False)
    assert r.returncode != 0 and "spec.image" in r.stderr, r.stderr


def test_kubectl_explain_describes_the_new_fields(apiserver, operator):
    for what, words in (
        ("alertfilter.spec.image", "built FROM the runner image"),
        ("alertfilter.status.image", "The image the runner pods run"),
        ("filterpool.spec.allowedImages", "prefixes of the image reference"),
    ):
        r = apiserver.kubectl("explain", what)
        assert words in " ".join(r.stdout.split()), (what, r.stdout)


def test_a_pool_that_stops_allowing_an_image_stops_its_runner_at_once(apiserver, operator, pool, namespace):
    pname, _ = pool
    apply_json(apiserver, alertfilter("later", pool=pname, image=GROUP_IMAGE), namespace)
    wait_for(lambda: _deployment_image(apiserver, namespace, "later") == GROUP_IMAGE, 60, "the runner")
    apiserver.kubectl(
        "patch",
        "filterpool",
        pname,
        "--type=merge",
        "-p",
        '{"spec": {"allowedImages": ["registry.example.org/other/"]}}',
    )
    wait_for(lambda: get(apiserver, "deployment", "af-later", namespace) is None, 60, "the runner to stop")
    ready = wait_for(
        lambda: next(
            (
                c
                for c in (get(apiserver, "alertfilter", "later", namespace).get("status") or {}).get("conditions", [])
                if c["type"] == "Ready" and c["reason"] == "ImageNotAllowed"
            ),
            None,
        ),
        60,
        "Ready=False ImageNotAllowed",
    )
    assert ready["status"] == "False" and "registry.example.org/other/" in ready["message"]
    apiserver.kubectl("patch", "filterpool", pname, "--type=merge", "-p", '{"spec": {"allowedImages": null}}')
    wait_for(lambda: _deployment_image(apiserver, namespace, "later") == GROUP_IMAGE, 60, "the runner again")
