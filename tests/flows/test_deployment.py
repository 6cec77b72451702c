"""Smoke test of the deployment files: prefect.yaml loads and its entrypoints import; the infra specs parse
and agree with each other (Docker, Kubernetes and Slurm cannot run here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _prefect_yaml() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((REPO / "prefect.yaml").read_text())


def _load_entrypoint(entrypoint: str):  # type: ignore[no-untyped-def]
    path, _, func = entrypoint.partition(":")
    module_name = path.removesuffix(".py").replace("/", ".")
    assert (REPO / path).is_file(), f"entrypoint file {path} does not exist"
    module = importlib.import_module(module_name)
    return getattr(module, func)


def test_prefect_yaml_validates_and_schedules_nightly_at_two() -> None:
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule

    raw = _prefect_yaml()
    model = PrefectYamlModel.model_validate(raw)
    assert [d.name for d in model.deployments] == ["nightly"]
    dep = raw["deployments"][0]
    (sched,) = dep["schedules"]
    built = _schedule_config_to_deployment_schedule(sched)["schedule"]
    assert built.cron == "0 2 * * *"
    minute, hour, *_ = built.cron.split()
    assert (minute, hour) == ("0", "2")
    ZoneInfo(built.timezone)  # a real IANA zone
    assert built.timezone == raw["definitions"]["site"]["timezone"]
    assert dep["work_pool"]["name"] == "osteolake"
    assert dep["concurrency_limit"] == 1


def test_every_entrypoint_imports_as_a_prefect_flow() -> None:
    from prefect import Flow

    entrypoints = [d["entrypoint"] for d in _prefect_yaml()["deployments"]]
    assert entrypoints
    for ep in entrypoints:
        obj = _load_entrypoint(ep)
        assert isinstance(obj, Flow), f"{ep} is not a Prefect flow"
        assert obj.name == ep.rsplit(":", 1)[1]


def test_serve_builds_the_same_deployment_as_prefect_yaml() -> None:
    from flows.cli.serve import DEPLOYMENT_NAME, build_deployment

    dep = _prefect_yaml()["deployments"][0]
    tz = dep["schedules"][0]["timezone"]
    served = build_deployment(dep["schedules"][0]["cron"], tz)
    assert served.name == DEPLOYMENT_NAME == dep["name"]
    assert served.entrypoint == dep["entrypoint"]
    (s,) = served.schedules
    assert (s.schedule.cron, s.schedule.timezone) == ("0 2 * * *", tz)
    with pytest.raises(ValueError, match="not an IANA zone"):
        build_deployment("0 2 * * *", "Mars/Olympus")
    with pytest.raises(ValueError, match="not a valid cron"):
        build_deployment("0 25 * * *", "UTC")


def test_compose_services_agree_with_the_deployment() -> None:
    compose = yaml.safe_load((REPO / "infra" / "compose.yaml").read_text())
    services = compose["services"]
    for name in ("prefect-server", "prefect-worker", "dask-scheduler", "dask-worker", "postgres", "orthanc"):
        assert name in services, name
    worker_cmd = services["prefect-worker"]["command"]
    assert worker_cmd[worker_cmd.index("--pool") + 1] == _prefect_yaml()["deployments"][0]["work_pool"]["name"]
    env = services["prefect-worker"]["environment"]
    assert env["OSTEOLAKE_DASK_ADDRESS"] == "tcp://dask-scheduler:8786"
    assert "8786" in " ".join(services["dask-scheduler"]["command"])
    assert services["dask-worker"]["command"][2] == "tcp://dask-scheduler:8786"
    assert env["PREFECT_API_URL"].startswith("http://prefect-server:4200")
    assert env["OSTEOLAKE_TIMEZONE"] == _prefect_yaml()["definitions"]["site"]["timezone"]
    # secrets come from a file or the environment, never literals in the file
    assert "pseudonym_key" in compose["secrets"] and "PSEUDONYM_KEY_FILE" in " ".join(env)
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${")


def test_dockerfile_matches_the_pull_step() -> None:
    text = (REPO / "infra" / "Dockerfile").read_text()
    (step,) = _prefect_yaml()["pull"]
    workdir = step["prefect.deployments.steps.set_working_directory"]["directory"]
    assert f"WORKDIR {workdir}" in text
    assert text.lstrip().splitlines()[0].startswith("#") and "\nFROM python:3.11" in text
    for folder in ("schemas", "tasks", "warehouse", "flows"):
        assert f"COPY {folder} ./{folder}" in text


def test_kubernetes_specs_parse() -> None:
    docs = list(yaml.safe_load_all((REPO / "infra" / "k8s" / "daskcluster.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs}
    cluster = kinds["DaskCluster"]
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    ports = {p["port"] for p in cluster["spec"]["scheduler"]["service"]["ports"]}
    assert ports == {8786, 8787}
    assert cluster["spec"]["worker"]["replicas"] >= 1
    assert kinds["DaskAutoscaler"]["spec"]["cluster"] == cluster["metadata"]["name"]
    values = yaml.safe_load((REPO / "infra" / "k8s" / "prefect-worker-values.yaml").read_text())
    assert values["worker"]["config"]["workPool"] == "osteolake"


def test_slurm_spec_builds_a_job_script() -> None:
    pytest.importorskip("dask_jobqueue")
    spec = importlib.util.spec_from_file_location("osteolake_slurm", REPO / "infra" / "slurm" / "cluster.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["osteolake_slurm"] = mod
    spec.loader.exec_module(mod)
    cluster = mod.make_cluster()
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -J osteolake-worker" in script
    assert "#SBATCH -p cpu" in script and "#SBATCH -t 04:00:00" in script
    assert "--nthreads 1" in script and "dask_worker" in script
