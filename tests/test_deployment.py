"""The docker/ deployment cannot run here (no Docker engine): keep it consistent with the code."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from re_pipeline.cli import build_parser
from re_pipeline.config import Settings

DOCKER = ROOT / "docker"
COMPOSE = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
AIRFLOW_COMMANDS = {"db", "pools", "api-server", "scheduler", "dag-processor", "triggerer", "celery"}


def _services() -> dict[str, dict]:
    return COMPOSE["services"]


def test_compose_runs_the_airflow_components_and_both_workers() -> None:
    commands = {name: svc.get("command", []) for name, svc in _services().items()}
    for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
        assert [component] in commands.values(), component
    queues = {tuple(c[c.index("--queues") + 1 :][:1]) for c in commands.values() if "--queues" in c}
    assert queues == {("default",), ("gpu",)}
    gpu = _services()["worker-gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    env = _services()["scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["RE_PIPELINE_GPU_QUEUE"] == "gpu"


@pytest.mark.parametrize("name", sorted(COMPOSE["services"]))
def test_every_referenced_path_and_command_exists(name: str) -> None:
    svc = _services()[name]
    build = svc.get("build")
    if build:
        context = (DOCKER / build["context"]).resolve()
        assert (context / build["dockerfile"]).is_file()
    for volume in svc.get("volumes", []):
        host = volume.split(":")[0]
        if host.startswith("."):
            assert (DOCKER / host).exists(), volume
    command = svc.get("command")
    if not command or svc.get("image", "").startswith(("postgres", "redis")):
        return
    if svc.get("entrypoint") == ["re-pipeline"]:
        build_parser().parse_args(command)  # exits on an unknown command or flag
    else:
        assert command[0] in AIRFLOW_COMMANDS, command


@pytest.mark.parametrize("dockerfile", sorted(DOCKER.glob("Dockerfile.*")))
def test_dockerfiles_copy_files_that_exist(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    for line in re.findall(r"^COPY (.+)$", text, flags=re.M):
        for src in line.split()[:-1]:
            assert (ROOT / src).exists(), f"{dockerfile.name}: COPY {src}"
    assert "torch==2.13.0" in text


def test_environment_names_are_real_settings() -> None:
    known = {f"RE_PIPELINE_{f.name.upper()}" for f in fields(Settings)}
    used = {
        key for svc in _services().values() for key in (svc.get("environment") or {}) if key.startswith("RE_PIPELINE_")
    }
    used |= set(re.findall(r"RE_PIPELINE_[A-Z_]+", (DOCKER / "Dockerfile.cpu").read_text()))
    used |= set(re.findall(r"RE_PIPELINE_[A-Z_]+", (DOCKER / "Dockerfile.gpu").read_text()))
    assert used and used <= known, used - known
