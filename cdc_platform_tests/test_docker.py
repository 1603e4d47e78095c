"""The compose deployment in docker/: it renders, and what it renders holds together.

``docker compose config`` parses, interpolates and validates docker/compose.yaml without a
Docker engine; the tests check the rendered model against docker/pipeline.yaml (which
``PipelineConfig`` must accept), the Cassandra overrides, the Dockerfile and .env.example.
They are skipped only when no Docker Compose v2 is installed (.ci/run installs one). The
helper scripts the containers run (with-secrets, the Cassandra entry point) are run here too.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from cdc_platform.defs.config import PipelineConfig
from cdc_platform.defs.resources import masking_key_variables
from cdc_platform.schema.cql import load_schema

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
PIPELINE = DOCKER / "pipeline.yaml"
CASSANDRA_OVERRIDES = DOCKER / "cassandra" / "cdc.yaml"

SERVICES = {
    "cassandra",
    "cassandra-init",
    "postgres",
    "timescaledb",
    "clickhouse",
    "code-location",
    "webserver",
    "daemon",
}
DAGSTER_SERVICES = ("code-location", "webserver", "daemon")
PIPELINE_SERVICES = ("code-location", "daemon")
# Where the docker CLI looks for plugins (the plugin binary also runs on its own).
PLUGIN_PATHS = (
    Path.home() / ".docker" / "cli-plugins" / "docker-compose",
    Path("/usr/local/lib/docker/cli-plugins/docker-compose"),
    Path("/usr/local/libexec/docker/cli-plugins/docker-compose"),
    Path("/usr/lib/docker/cli-plugins/docker-compose"),
    Path("/usr/libexec/docker/cli-plugins/docker-compose"),
)
SECRET_NAME = re.compile(r"PASSWORD|_KEY_|SECRET|TOKEN")


# --------------------------------------------------------------------------------------------
# Helpers


def find_compose() -> list[str] | None:
    """A Docker Compose v2 command: ``docker compose``, ``docker-compose`` or the plugin binary."""
    candidates: list[list[str]] = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    candidates += [[str(p)] for p in PLUGIN_PATHS if p.is_file() and os.access(p, os.X_OK)]
    for command in candidates:
        try:
            out = subprocess.run(
                [*command, "version", "--short"], capture_output=True, text=True, timeout=60, check=False
            )
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip().lstrip("v").startswith("2."):
            return command
    return None


def compose_config(compose: list[str], env_file: Path) -> subprocess.CompletedProcess[str]:
    """``compose config`` of docker/compose.yaml with only ``env_file``'s variables."""
    # Nothing from the caller's environment may fill a variable the env file leaves out.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "DOCKER_CONFIG", "TMPDIR")}
    return subprocess.run(
        [*compose, "-f", str(COMPOSE_FILE), "--env-file", str(env_file), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        env=env,
    )


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, with ``${NAME}`` replaced by earlier values (as compose does)."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not KEY=VALUE: {line!r}"
        out[key] = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: out[m.group(1)], value)
    return out


def volume_mounts(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Named-volume mounts of a service by volume name."""
    return {v["source"]: v for v in service.get("volumes", []) if v.get("type") == "volume"}


def targets(service: dict[str, Any]) -> set[str]:
    return {v["target"] for v in service.get("volumes", []) if v.get("type") == "volume"}


def read_dockerfile() -> tuple[dict[str, str], dict[str, str]]:
    """The final stage of docker/Dockerfile: its ENV, and repository path → path in the image (COPY)."""
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    final = text.split("\nFROM ")[-1]
    env: dict[str, str] = {}
    workdir = PurePosixPath("/")
    paths: dict[str, str] = {}
    for line in final.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        op, args = words[0].upper(), words[1:]
        if op == "ENV":
            env.update(a.partition("=")[::2] for a in args if "=" in a)
        elif op == "WORKDIR":
            workdir = workdir / args[0]
        elif op == "COPY" and not any(a.startswith("--from") for a in args):
            args = [
                re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], a) for a in args if not a.startswith("--")
            ]
            *sources, dest = args
            dest_path = workdir / dest
            for src in sources:
                if dest.endswith("/") or len(sources) > 1:
                    paths[src.rstrip("/")] = str(dest_path / PurePosixPath(src).name)
                else:
                    paths[src.rstrip("/")] = str(dest_path)
    return env, paths


def image_paths() -> dict[str, str]:
    return read_dockerfile()[1]


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def compose() -> list[str]:
    command = find_compose()
    if command is None:
        pytest.skip(
            "Docker Compose v2 is not installed (neither `docker compose` nor a v2 docker-compose binary); "
            ".ci/run installs it into /usr/local/lib/docker/cli-plugins"
        )
    return command


@pytest.fixture(scope="module")
def rendered(compose: list[str]) -> dict[str, Any]:
    result = compose_config(compose, ENV_EXAMPLE)
    assert result.returncode == 0, f"docker compose config failed:\n{result.stderr}"
    model: dict[str, Any] = json.loads(result.stdout)
    model["_text"] = result.stdout
    return model


@pytest.fixture(scope="module")
def pipeline() -> PipelineConfig:
    # docker/pipeline.yaml uses no ${VAR} paths; a variable it starts to use must be set here.
    return PipelineConfig.from_file(PIPELINE)


@pytest.fixture(scope="module")
def overrides() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CASSANDRA_OVERRIDES.read_text(encoding="utf-8"))
    return data


# --------------------------------------------------------------------------------------------
# docker compose config


def test_renders_every_service(rendered: dict[str, Any]) -> None:
    assert set(rendered["services"]) == SERVICES
    assert rendered["services"]["cassandra"]["image"].startswith("cassandra:4.1")
    assert rendered["services"]["timescaledb"]["image"].startswith("timescale/timescaledb:")
    assert rendered["services"]["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert rendered["services"]["postgres"]["image"].startswith("postgres:")
    for name in DAGSTER_SERVICES:
        service = rendered["services"][name]
        assert service["build"]["dockerfile"] == "docker/Dockerfile"
        assert Path(service["build"]["context"]) == ROOT
        assert service["image"] == rendered["services"]["code-location"]["image"]


def test_a_missing_variable_is_an_error(compose: list[str], tmp_path: Path) -> None:
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    env_file = tmp_path / "partial.env"
    env_file.write_text(
        "\n".join(x for x in lines if not x.startswith("CDC_CLICKHOUSE_URL=")), encoding="utf-8"
    )
    result = compose_config(compose, env_file)
    assert result.returncode != 0
    assert "CDC_CLICKHOUSE_URL" in result.stderr


def test_cassandra_runs_with_cdc_enabled(
    rendered: dict[str, Any], overrides: dict[str, Any], pipeline: PipelineConfig
) -> None:
    cassandra = rendered["services"]["cassandra"]
    binds = {v["target"]: v for v in cassandra["volumes"] if v["type"] == "bind"}
    assert Path(binds["/cdc"]["source"]) == DOCKER / "cassandra"
    assert binds["/cdc"].get("read_only") is True
    assert cassandra["entrypoint"] == ["bash", "/cdc/entrypoint.sh"]
    assert (DOCKER / "cassandra" / "entrypoint.sh").is_file()
    assert overrides["cdc_enabled"] is True
    assert overrides["cdc_block_writes"] is True
    # The has_capacity check measures against the pipeline's figure: it must be the node's.
    (source,) = pipeline.sources
    assert overrides["cdc_total_space"] == f"{source.cdc_total_space_mb}MiB"
    # Segments are hard-linked from the commit log into cdc_raw: one file system, one volume.
    mount = PurePosixPath(volume_mounts(cassandra)["cdc_raw"]["target"])
    for key in ("commitlog_directory", "cdc_raw_directory"):
        assert PurePosixPath(overrides[key]).is_relative_to(mount), key
    assert cassandra["environment"]["CASSANDRA_DC"] == "dc1"


def test_code_location_and_daemon_see_cdc_raw_where_the_pipeline_says(
    rendered: dict[str, Any], overrides: dict[str, Any], pipeline: PipelineConfig
) -> None:
    cassandra_mount = PurePosixPath(volume_mounts(rendered["services"]["cassandra"])["cdc_raw"]["target"])
    subpath = str(PurePosixPath(overrides["cdc_raw_directory"]).relative_to(cassandra_mount))
    (source,) = pipeline.sources
    for name in PIPELINE_SERVICES:
        mount = volume_mounts(rendered["services"][name])["cdc_raw"]
        assert mount["target"] == str(source.cdc_raw), name
        assert mount.get("volume", {}).get("subpath") == subpath, name
        assert not mount.get("read_only"), f"{name}: retiring segments needs cdc_raw read-write"
    assert "cdc_raw" in rendered["volumes"]


def test_pipeline_directories_are_volumes(rendered: dict[str, Any], pipeline: PipelineConfig) -> None:
    assert pipeline.retirement.mode == "archive"
    wanted = {str(pipeline.staging), str(pipeline.dead_letter), str(pipeline.retirement.archive)}
    for name in PIPELINE_SERVICES:
        service = rendered["services"][name]
        assert wanted <= targets(service), name
        assert all(not v.get("read_only") for v in service["volumes"]), name
    # Compute logs are written by runs in the code location and read by the webserver.
    image_env, _ = read_dockerfile()
    storage = f"{image_env['DAGSTER_HOME']}/storage"
    assert storage in targets(rendered["services"]["code-location"])
    assert storage in targets(rendered["services"]["webserver"])


def test_every_variable_of_the_pipeline_reaches_its_containers(
    rendered: dict[str, Any], pipeline: PipelineConfig
) -> None:
    needed = {d.url_env for d in pipeline.destinations}
    assert pipeline.quarantine_url_env is not None
    needed.add(pipeline.quarantine_url_env)
    needed.update(masking_key_variables(pipeline.masking))
    assert {"CDC_MASK_KEY_2026", "CDC_MASK_KEY_2025", "CDC_VAULT_KEY_2026"} <= needed
    top_secrets = rendered["secrets"]
    for name in PIPELINE_SERVICES:
        service = rendered["services"][name]
        env = service["environment"]
        granted = {s["source"]: s.get("target", f"/run/secrets/{s['source']}") for s in service["secrets"]}
        for var in needed | {"DAGSTER_PG_PASSWORD"}:
            if var in env:
                continue
            path = env.get(f"{var}_FILE")
            assert path is not None, f"{name}: neither {var} nor {var}_FILE is set"
            assert path in granted.values(), f"{name}: {var}_FILE names {path}, not a secret of the service"
        for secret in granted:
            assert secret in top_secrets
        assert env["CDC_PIPELINE_CONFIG"] == image_paths()["docker/pipeline.yaml"]
    for name in DAGSTER_SERVICES:
        env = rendered["services"][name]["environment"]
        assert env["DAGSTER_PG_HOST"] == "postgres"
        assert {"DAGSTER_PG_PORT", "DAGSTER_PG_USERNAME", "DAGSTER_PG_DB", "DAGSTER_PG_PASSWORD_FILE"} <= set(
            env
        )


def test_the_image_holds_what_the_pipeline_refers_to(pipeline: PipelineConfig) -> None:
    paths = image_paths()
    in_image = PurePosixPath(paths["docker/pipeline.yaml"]).parent
    # The pipeline's relative paths resolve in the image as they do in the repository.
    for repo_path in (pipeline.schema_path, pipeline.quality, pipeline.masking):
        assert repo_path is not None
        relative = os.path.relpath(repo_path, PIPELINE.parent)
        target = PurePosixPath(os.path.normpath(in_image / relative))
        top = Path(repo_path).relative_to(ROOT).parts[0]
        assert target.is_relative_to(paths[top]), f"{relative}: {target} is not under {paths[top]}"
    image_env, _ = read_dockerfile()
    assert paths["cdc_platform/templates/dagster.yaml"] == f"{image_env['DAGSTER_HOME']}/dagster.yaml"
    # The image's default pipeline is the docker one, as the compose file says explicitly.
    assert image_env["CDC_PIPELINE_CONFIG"] == paths["docker/pipeline.yaml"]
    assert "docker/workspace.yaml" in paths and "docker/with-secrets.py" in paths


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    # .dockerignore excludes everything (the context would hold .venv) but what it lists.
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    ]
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    copied = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0].upper() == "COPY" and not any(w.startswith("--from") for w in words):
            copied += [w.rstrip("/") for w in words[1:-1] if not w.startswith("--")]
    assert copied
    for src in copied:
        assert (ROOT / src).exists(), src
        assert any(src == a or src.startswith(f"{a}/") for a in allowed), f"{src} is not in the build context"


def test_no_secret_value_is_inlined(rendered: dict[str, Any]) -> None:
    example = read_env_file(ENV_EXAMPLE)
    secret_vars = {s["environment"] for s in rendered["secrets"].values()}
    assert all(SECRET_NAME.search(k) or k.endswith("_URL") for k in secret_vars)
    assert {k for k in example if SECRET_NAME.search(k)} <= secret_vars
    # Every secret's variable is in the example, and the example holds placeholders only.
    for var in secret_vars:
        assert var in example, f"{var} is missing from docker/.env.example"
        assert "change-me" in example[var], f"{var} in docker/.env.example is not a placeholder"
    compose_text = COMPOSE_FILE.read_text(encoding="utf-8")
    for var in secret_vars:
        value = example[var]
        assert value not in rendered["_text"], f"the value of {var} is in the rendered configuration"
        assert value not in compose_text
    for name, service in rendered["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key) and not key.endswith("_FILE"):
                pytest.fail(f"{name}: {key} is set in the environment; give it as a secret file")
            if key.endswith("_URL"):
                assert urlsplit(value).password is None, f"{name}: {key} holds a password"


def test_health_checks_and_start_order(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    for name, service in services.items():
        if name == "cassandra-init":
            assert service.get("restart") == "no"
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"

    def conditions(name: str) -> dict[str, str]:
        return {k: v["condition"] for k, v in services[name].get("depends_on", {}).items()}

    assert conditions("cassandra-init") == {"cassandra": "service_healthy"}
    assert conditions("code-location") == {
        "postgres": "service_healthy",
        "timescaledb": "service_healthy",
        "clickhouse": "service_healthy",
        "cassandra": "service_healthy",
        "cassandra-init": "service_completed_successfully",
    }
    for name in ("webserver", "daemon"):
        assert conditions(name) == {"postgres": "service_healthy", "code-location": "service_healthy"}


def test_webserver_and_daemon_load_the_code_location_over_grpc(rendered: dict[str, Any]) -> None:
    workspace = yaml.safe_load((DOCKER / "workspace.yaml").read_text(encoding="utf-8"))
    (entry,) = workspace["load_from"]
    server = entry["grpc_server"]
    command = rendered["services"]["code-location"]["command"]
    assert command[:3] == ["dagster", "code-server", "start"]
    assert server["host"] == "code-location"
    assert server["port"] == int(command[command.index("--port") + 1])
    assert server["location_name"] == command[command.index("--location-name") + 1]
    assert command[command.index("--module-name") + 1] == "cdc_platform.definitions"
    in_image = image_paths()["docker/workspace.yaml"]
    for name in ("webserver", "daemon"):
        cmd = rendered["services"][name]["command"]
        assert cmd[cmd.index("--workspace") + 1] == in_image, name


def test_init_schema_is_the_pipeline_schema(pipeline: PipelineConfig) -> None:
    init = load_schema(DOCKER / "cassandra" / "shop.cql")
    assert init.keyspaces["shop"].replication.get("dc1") == "1"

    def shape(schema: Any) -> dict[str, Any]:
        return {
            t.qualified_name: (t.id, [(c.name, str(c.type), c.kind) for c in t.columns], t.cdc)
            for t in schema.tables
        }

    assert shape(init) == shape(pipeline.schema)
    assert all(init.table(name).cdc for name in pipeline.capture)


# --------------------------------------------------------------------------------------------
# Scripts the containers run


def run_with_secrets(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DOCKER / "with-secrets.py"), *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": os.environ.get("PATH", ""), **env},
    )


def test_with_secrets_exports_file_contents(tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text("postgresql://cdc:pw@postgres/cdc\n", encoding="utf-8")
    show = "import os; print(os.environ['CDC_POSTGRES_URL'])"
    result = run_with_secrets({"CDC_POSTGRES_URL_FILE": str(secret)}, sys.executable, "-c", show)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "postgresql://cdc:pw@postgres/cdc\n"


@pytest.mark.parametrize("case", ["missing", "empty", "both"])
def test_with_secrets_refuses_unusable_secrets(tmp_path: Path, case: str) -> None:
    secret = tmp_path / "key"
    env = {"CDC_MASK_KEY_2026_FILE": str(secret)}
    if case == "empty":
        secret.write_text("\n", encoding="utf-8")
    elif case == "both":
        secret.write_text("hex:00112233445566778899aabbccddeeff", encoding="utf-8")
        env["CDC_MASK_KEY_2026"] = "another"
    result = run_with_secrets(env, sys.executable, "-c", "print('ran')")
    assert result.returncode == 2
    assert "ran" not in result.stdout
    assert "CDC_MASK_KEY_2026" in result.stderr


def test_cassandra_entrypoint_applies_the_overrides(tmp_path: Path, overrides: dict[str, Any]) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    conf = conf_dir / "cassandra.yaml"
    conf.write_text(
        "cluster_name: 'Test Cluster'\n"
        "# commitlog_directory: /var/lib/cassandra/commitlog\n"
        "cdc_enabled: false\n"
        "# cdc_raw_directory: /var/lib/cassandra/cdc_raw\n"
        "cdc_total_space_in_mb: 4096\n"
        "transparent_data_encryption_options:\n"
        "  enabled: false\n",
        encoding="utf-8",
    )
    # The same overrides, with the directories under tmp_path.
    volume = tmp_path / "volume"
    text = CASSANDRA_OVERRIDES.read_text(encoding="utf-8")
    for key in ("commitlog_directory", "cdc_raw_directory"):
        text = text.replace(overrides[key], str(volume / PurePosixPath(overrides[key]).name))
    local_overrides = tmp_path / "cdc.yaml"
    local_overrides.write_text(text, encoding="utf-8")
    # The image's entry point, stubbed: it records its arguments.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "docker-entrypoint.sh"
    stub.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "started"}\n', encoding="utf-8")
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    env = {
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "CASSANDRA_CONF": str(conf_dir),
        "CDC_CASSANDRA_OVERRIDES": str(local_overrides),
    }
    for _ in range(2):  # a restarted container runs it again
        result = subprocess.run(
            ["bash", str(DOCKER / "cassandra" / "entrypoint.sh"), "cassandra", "-f"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "started").read_text(encoding="utf-8") == "cassandra -f\n"
    applied = conf.read_text(encoding="utf-8")
    data = yaml.safe_load(applied)
    assert data["cluster_name"] == "Test Cluster"
    assert data["transparent_data_encryption_options"] == {"enabled": False}
    assert data["cdc_enabled"] is True
    assert data["cdc_total_space"] == overrides["cdc_total_space"]
    assert "cdc_total_space_in_mb" not in data
    assert data["cdc_raw_directory"] == str(volume / "cdc_raw")
    for key in overrides:
        assert len(re.findall(rf"^{key}:", applied, flags=re.M)) == 1, key
    assert (volume / "cdc_raw").is_dir() and (volume / "commitlog").is_dir()
