"""deploy/kubernetes/: valid for Kubernetes 1.33 (strict schemas), and a deployment that keeps
the service's promises: replicas, probes, a drain that fits the grace period, bounded resources,
a non-root read-only container, configuration from the ConfigMap and secrets only by
reference. No cluster runs here; the last tests run the container's commands as the manifests
do, as a user that cannot write outside its temporary directory."""

from __future__ import annotations

import copy
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from conftest import REDIS_URL
from net import free_port
from processes import CLI

from settings_api.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.33.0"
# Variables that carry credentials: only ever from a Secret.
SECRET_VARIABLES = {
    "MCPGW_DATABASE_URL",
    "MCPGW_REDIS_URL",
    "MCPGW_JWT_SECRET",
    "MCPGW_SESSION_SECRET",
    "MCPGW_SECRET_KEY",
}
SECRETISH = re.compile(r"pass(word|wd)?|secret|token|credential|api[_-]?key|private|dsn", re.I)
# Redis modes are documented names whose values the ConfigMap test checks itself.
REDIS_MODES = ("standalone", "cluster", "sentinel")


def load_documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        docs += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


@pytest.fixture(scope="module")
def docs() -> list[tuple[Path, dict[str, Any]]]:
    return load_documents()


def one(docs: list[tuple[Path, dict[str, Any]]], kind: str) -> dict[str, Any]:
    found = [doc for _, doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def configmap_data(docs: list[tuple[Path, dict[str, Any]]]) -> dict[str, str]:
    return dict(one(docs, "ConfigMap")["data"])


def sample_secret(key: str) -> str:
    return f"sample-{key}-" + "s" * 40


def test_every_manifest_is_valid_for_kubernetes_1_33_strict(
    docs: list[tuple[Path, dict[str, Any]]],
) -> None:
    kinds = sorted(doc["kind"] for _, doc in docs)
    expected = ("ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Job", "PodDisruptionBudget")
    assert kinds == sorted([*expected, "Service"])
    for _, doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    # Strict means strict: a misspelt field fails, so the checks above are not vacuous.
    typo = copy.deepcopy(one(docs, "Deployment"))
    typo["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=True)


def test_deployment_replicas_probes_and_port(docs: list[tuple[Path, dict[str, Any]]]) -> None:
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] >= 2
    gateway = container(deployment)
    args = gateway["args"]
    assert args[:2] == ["mcp-gateway", "serve"]
    port = int(args[args.index("--port") + 1])
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    assert ports == {"http": port}
    # Probes and the Service reach the pod on its address, not on loopback.
    assert args[args.index("--host") + 1] == "0.0.0.0"  # noqa: S104
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = gateway[probe]["httpGet"]
        assert get["path"] == path and get["port"] in ("http", port)
    # A rollout never drops below the replicas asked for.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_grace_period_covers_the_documented_drain(
    docs: list[tuple[Path, dict[str, Any]]],
) -> None:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    pre_stop = container(one(docs, "Deployment")).get("lifecycle", {}).get("preStop", {})
    sleep_s = pre_stop.get("sleep", {}).get("seconds", 0)
    grace_s = float(configmap_data(docs)["MCPGW_SHUTDOWN_GRACE_S"])
    in_flight_s = 10  # serve's shutdown_timeout (docs/configuration.md, Shutdown)
    assert "terminationGracePeriodSeconds" in pod, "must be explicit"
    assert pod["terminationGracePeriodSeconds"] >= sleep_s + grace_s + in_flight_s


def test_requests_and_limits_on_every_container(docs: list[tuple[Path, dict[str, Any]]]) -> None:
    for kind in ("Deployment", "Job"):
        resources = container(one(docs, kind))["resources"]
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[bound]), f"{kind} {bound}"


def test_non_root_read_only_with_only_tmp_writable(
    docs: list[tuple[Path, dict[str, Any]]],
) -> None:
    user = dockerfile_user()
    for kind in ("Deployment", "Job"):
        workload = one(docs, kind)
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == user != 0
        assert pod["automountServiceAccountToken"] is False
        security = container(workload)["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"]: m["name"] for m in container(workload)["volumeMounts"]}
        assert mounts == {"/tmp": "tmp"}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes["tmp"]


def dockerfile_user() -> int:
    """The image's numeric USER: the kubelet can verify runAsNonRoot against it."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    match = re.search(r"^USER (\d+)(?::\d+)?$", dockerfile, re.M)
    assert match, "the Dockerfile's USER must be numeric"
    return int(match.group(1))


def test_service_hpa_and_pdb_select_the_gateway_pods(
    docs: list[tuple[Path, dict[str, Any]]],
) -> None:
    deployment = one(docs, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()

    service = one(docs, "Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]

    hpa = one(docs, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert [(m["type"], m["resource"]["name"]) for m in hpa["spec"]["metrics"]] == [
        ("Resource", "cpu")
    ]
    assert "cpu" in container(deployment)["resources"]["requests"]  # utilization needs it
    assert hpa["spec"]["minReplicas"] >= 2

    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for replicas in {deployment["spec"]["replicas"], hpa["spec"]["minReplicas"], 2}:
        kept, may_go = disruption_budget(pdb["spec"], replicas)
        assert kept >= 1 and may_go >= 1, f"with {replicas} replicas"


def disruption_budget(spec: dict[str, Any], replicas: int) -> tuple[int, int]:
    """(pods kept, pods allowed to go) under a PDB spec with integer or percentage bounds."""

    def count(value: int | str, round_up: bool) -> int:
        if isinstance(value, int):
            return value
        share = replicas * int(value.rstrip("%")) / 100
        return math.ceil(share) if round_up else math.floor(share)

    if "minAvailable" in spec:
        kept = count(spec["minAvailable"], round_up=True)
        return kept, replicas - kept
    may_go = count(spec["maxUnavailable"], round_up=False)
    return replicas - may_go, may_go


def test_configmap_is_what_the_service_reads(
    docs: list[tuple[Path, dict[str, Any]]], tmp_path: Path
) -> None:
    data = configmap_data(docs)
    source = (ROOT / "settings_api" / "config.py").read_text()
    known = set(re.findall(r'"(MCPGW_[A-Z0-9_]+)"', source))
    unknown = set(data) - known
    assert not unknown, f"variables the service never reads: {unknown}"
    assert data["MCPGW_REDIS_MODE"] in REDIS_MODES
    assert not set(data) & SECRET_VARIABLES
    env = {**data, **{name: sample_secret(name) for name in SECRET_VARIABLES}}
    env["MCPGW_DATABASE_URL"] = "postgresql://mcpgw@postgres:5432/mcpgw"
    env["MCPGW_REDIS_URL"] = "redis://redis:6379/0"
    env["MCPGW_DATA_DIR"] = str(tmp_path / "data")
    load_settings(env)  # every value passes the service's own validation
    # The other Redis modes, as the ConfigMap's comment and docs/operations.md set them up.
    commented = re.findall(r"#\s+(MCPGW_[A-Z_]+):", (MANIFESTS / "configmap.yaml").read_text())
    assert commented == ["MCPGW_REDIS_SENTINEL_MASTER"] and set(commented) <= known
    sentinels = "redis://sentinel-0:26379,redis://sentinel-1:26379,redis://sentinel-2:26379"
    sentinel = load_settings(
        {
            **env,
            "MCPGW_REDIS_MODE": "sentinel",
            "MCPGW_REDIS_SENTINEL_MASTER": "mymaster",
            "MCPGW_REDIS_URL": sentinels,
        }
    )
    assert sentinel.redis_sentinel_master == "mymaster"
    seeds = "redis://redis-cluster-0:6379,redis://redis-cluster-1:6379"
    load_settings({**env, "MCPGW_REDIS_MODE": "cluster", "MCPGW_REDIS_URL": seeds})
    hpa = one(docs, "HorizontalPodAutoscaler")
    # Postgres's default max_connections is 100, a few reserved: the fleet at its largest fits.
    assert hpa["spec"]["maxReplicas"] * int(data["MCPGW_DB_POOL_SIZE"]) <= 90


def test_secrets_come_from_the_secret_only(docs: list[tuple[Path, dict[str, Any]]]) -> None:
    deployment_env = container(one(docs, "Deployment"))["env"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in deployment_env}
    assert set(refs) == SECRET_VARIABLES
    assert {r["name"] for r in refs.values()} == {"mcp-gateway"}
    # The Job reads the same configuration whole, so it needs the same references.
    job = container(one(docs, "Job"))
    assert job["env"] == deployment_env
    assert job["envFrom"] == container(one(docs, "Deployment"))["envFrom"]
    # The operator creates the Secret from docs/operations.md: every key is named there.
    operations = (ROOT / "docs" / "operations.md").read_text()
    for ref in refs.values():
        assert f"--from-literal={ref['key']}=" in operations, ref["key"]


def test_no_secret_literal_in_any_manifest(docs: list[tuple[Path, dict[str, Any]]]) -> None:
    for path, doc in docs:
        assert doc["kind"] != "Secret", f"{path.name}: a Secret with values belongs nowhere here"
        for where, key, value in scalars(doc):
            if key is not None and SECRETISH.search(key) and where[-1:] != ("secretKeyRef",):
                pytest.fail(f"{path.name}: {'.'.join(where)}.{key} holds a literal")
            assert not looks_secret(value), f"{path.name}: {'.'.join(where)}.{key}={value!r}"
        for env in env_entries(doc):
            if SECRETISH.search(env["name"]) or env["name"] in SECRET_VARIABLES:
                assert "value" not in env, f"{path.name}: {env['name']} has a literal value"
    for path in MANIFESTS.glob("*.yaml"):  # comments included
        assert not CREDENTIALS_IN_URL.search(path.read_text()), path.name


CREDENTIALS_IN_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@", re.I)


def looks_secret(value: str) -> bool:
    """A URL with credentials, a PEM block, or a long unbroken random-looking token."""
    if CREDENTIALS_IN_URL.search(value) or "-----BEGIN" in value:
        return True
    for word in re.findall(r"[A-Za-z0-9+/_=-]{24,}", value):
        kinds = sum(bool(re.search(p, word)) for p in (r"[a-z]", r"[A-Z]", r"\d"))
        if kinds == 3 and len(set(word)) >= 16:
            return True
    return False


def scalars(
    node: Any, where: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str | None, str]]:
    """Every string value in a document, with its path and the key that holds it."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                yield where, str(key), value
            else:
                yield from scalars(value, (*where, str(key)))
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, str):
                yield where, None, item
            else:
                yield from scalars(item, where)


def env_entries(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "env" and isinstance(value, list):
                yield from value
            else:
                yield from env_entries(value)
    elif isinstance(node, list):
        for item in node:
            yield from env_entries(item)


def test_secret_scan_catches_literals() -> None:
    """The scan above is only as good as what it recognizes."""
    for leak in (
        "postgresql://mcpgw:hunter2@postgres:5432/mcpgw",
        "redis://:s3cret@redis:6379/0",
        "3q2+7wQ9ZkVx8LmN4pRtYb6HcJfD1sGa",
        "-----BEGIN PRIVATE KEY-----",
    ):
        assert looks_secret(leak), leak
    for fine in ("https://mcp.example.com", "/var/lib/mcp-gateway", "redis://redis:6379/0"):
        assert not looks_secret(fine), fine


def test_migration_job_runs_the_cli_migrate_command(
    docs: list[tuple[Path, dict[str, Any]]],
) -> None:
    job = one(docs, "Job")
    migrate = container(job)
    assert migrate["args"] == ["mcp-gateway", "migrate"]
    assert migrate["image"] == container(one(docs, "Deployment"))["image"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
    assert job["spec"]["backoffLimit"] >= 1 and job["spec"]["activeDeadlineSeconds"] > 0


# --- the container's commands, run as the manifests run them -------------------------------


@pytest.fixture
def pod_env(docs: list[tuple[Path, dict[str, Any]]], fresh_pg_url: str) -> Iterator[dict[str, str]]:
    """The ConfigMap and Secret as the pod sees them, and TMPDIR where `in_pod` mounts its
    emptyDir; the data dir is left to the read-only root."""
    top = Path(tempfile.mkdtemp(prefix="mcpgw-pod-"))
    (top / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCPGW_")}
    env.update(configmap_data(docs))
    env.update({name: sample_secret(name) for name in SECRET_VARIABLES})
    env.update(
        {
            "MCPGW_DATABASE_URL": fresh_pg_url,
            "MCPGW_REDIS_URL": REDIS_URL,
            "MCPGW_DATA_DIR": str(top / "var" / "lib" / "mcp-gateway"),
            "TMPDIR": str(top / "tmp"),
            "HOME": str(top / "tmp"),
            "PYTHONPATH": str(ROOT),
        }
    )
    try:
        yield env
    finally:
        shutil.rmtree(top, ignore_errors=True)


def in_pod(args: list[str]) -> list[str]:
    """`args` run as in the pod: in a mount namespace of their own where the whole filesystem
    is read-only but for an empty tmpfs on $TMPDIR (the emptyDir)."""
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is needed"
    script = 'mount -o remount,bind,ro / && mount -t tmpfs -o size=16m tmpfs "$TMPDIR" && exec "$@"'
    return [unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh", *args]


def command(args: list[str], **replace: str) -> list[str]:
    """A manifest's container args with the console script's full path and some flags set."""
    out = [CLI, *args[1:]]
    for flag, value in replace.items():
        out[out.index(f"--{flag}") + 1] = value
    return out


@pytest.mark.slow
def test_pod_commands_run_read_only_and_drain_within_the_grace_period(
    docs: list[tuple[Path, dict[str, Any]]], pod_env: dict[str, str]
) -> None:
    migrate = subprocess.run(
        in_pod(command(container(one(docs, "Job"))["args"])),
        env=pod_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrate.returncode == 0, migrate.stderr
    assert "applied migrations" in migrate.stdout

    port = free_port()
    args = command(container(one(docs, "Deployment"))["args"], host="127.0.0.1", port=str(port))
    proc = subprocess.Popen(in_pod(args), env=pod_env, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_status(base + "/readyz", 200, timeout_s=30) == 200
        assert wait_status(base + "/healthz", 200, timeout_s=1) == 200
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        sleep_s = container(one(docs, "Deployment"))["lifecycle"]["preStop"]["sleep"]["seconds"]
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        # Still serving, but out of rotation, while the grace runs.
        assert wait_status(base + "/readyz", 503, timeout_s=2) == 503
        assert proc.wait(pod["terminationGracePeriodSeconds"] - sleep_s) == 0
        assert time.monotonic() - started >= float(pod_env["MCPGW_SHUTDOWN_GRACE_S"]) - 0.5
    finally:
        if proc.poll() is None:
            proc.kill()
        stderr = proc.communicate(timeout=5)[1].decode(errors="replace")
    assert "Traceback" not in stderr, stderr
    assert not Path(pod_env["MCPGW_DATA_DIR"]).exists()  # nothing written outside /tmp


@pytest.mark.slow
def test_a_secret_missing_from_the_pod_stops_it_instead_of_generating_one(
    docs: list[tuple[Path, dict[str, Any]]], pod_env: dict[str, str]
) -> None:
    del pod_env["MCPGW_SESSION_SECRET"]
    args = command(container(one(docs, "Job"))["args"])
    result = subprocess.run(in_pod(args), env=pod_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "MCPGW_DATA_DIR" in result.stderr and "Traceback" not in result.stderr


def wait_status(url: str, status: int, timeout_s: float) -> int:
    """The first status `url` answers that equals `status`, or the last one seen."""
    deadline = time.monotonic() + timeout_s
    seen = 0
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                seen = resp.status
        except urllib.error.HTTPError as exc:
            seen = exc.code
        except OSError:
            seen = 0
        if seen == status or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)
