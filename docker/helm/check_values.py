#!/usr/bin/env python3
"""Checks docker/helm/values.yaml and docker/helm/search-workers-job.yaml without a cluster.

Always (make deploy-check runs this in a container of the app image, which has PyYAML and jsonschema):
  - both files parse; the values use the K8sRunLauncher, a user-code deployment of the stock_assets
    code location (the compose `code` service's module and location name), external PostgreSQL with
    no password in the file, runs that get the deployment's config, the image's non-root user;
  - the queue limits and run retries equal docker/dagster.yaml's (one source of truth on paper);
  - the search-workers Job runs `python -m stock_assets.lib.search_workers` with a seed per index.

With --schema FILE (the chart's values.schema.json, e.g. from the dagster repository's
helm/dagster/ at the chart's tag): validates the values against it. Helm validates the chart's
defaults merged with this file, so without --chart-values (the chart's values.yaml) the schema's
`required` lists are dropped (the defaults fill them); references to kubernetesjsonschema.dev are
accepted as they are (offline). With helm on PATH and --chart DIR: `helm template` as well.

Exit 0 when every check passes; prints one line per check.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
DOCKER = HERE.parent


def deep_merge(base, override):
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    return override


def offline_schema(schema: dict, keep_required: bool) -> dict:
    """External $refs become permissive; `required` goes unless the chart defaults are merged in."""

    def walk(node):
        if isinstance(node, dict):
            node = {k: walk(v) for k, v in node.items() if keep_required or k != "required"}
            ref = node.get("$ref")
            if isinstance(ref, str) and not ref.startswith("#"):
                node.pop("$ref")
            return node
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(copy.deepcopy(schema))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", default=str(HERE / "values.yaml"))
    parser.add_argument("--job", default=str(HERE / "search-workers-job.yaml"))
    parser.add_argument("--schema", help="the chart's values.schema.json")
    parser.add_argument("--chart-values", help="the chart's values.yaml (defaults merged before validating)")
    parser.add_argument("--chart", help="the chart's directory, for `helm template` when helm is installed")
    args = parser.parse_args()

    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        print(f"  {'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            failures.append(what)

    values = yaml.safe_load(Path(args.values).read_text())
    instance = yaml.safe_load((DOCKER / "dagster.yaml").read_text())
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    dockerfile = (DOCKER / "Dockerfile").read_text()
    job = yaml.safe_load(Path(args.job).read_text())

    launcher = values["runLauncher"]
    check(launcher["type"] == "K8sRunLauncher" and "k8sRunLauncher" in launcher["config"], "runs: K8sRunLauncher")
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    code_command = compose["services"]["code"]["command"]
    expected_args = code_command[code_command.index("-m") :]
    check(deployment["codeServerArgs"] == expected_args, f"user deployment serves {' '.join(expected_args)}")
    check(
        deployment["includeConfigInLaunchedRuns"]["enabled"], "run pods get the user deployment's env, secrets, volumes"
    )
    uid = re.search(r"ARG APP_UID=(\d+)", dockerfile).group(1)
    check(
        str(deployment["podSecurityContext"]["runAsUser"]) == uid and deployment["podSecurityContext"]["runAsNonRoot"],
        f"user code runs as the image's non-root user {uid}",
    )
    mounts = {m["mountPath"] for m in deployment["volumeMounts"]}
    check("/opt/dagster/stock_assets_home" in mounts, "STOCK_ASSETS_HOME on a shared volume")
    pg = values["postgresql"]
    check(
        pg["enabled"] is False
        and "postgresqlPassword" not in pg
        and values["generatePostgresqlPasswordSecret"] is False,
        "PostgreSQL external, its password only in a Secret",
    )
    check(
        pg.get("postgresqlScheme") == instance["run_storage"]["config"]["postgres_db"]["scheme"],
        "same psycopg2 scheme as docker/dagster.yaml",
    )
    queue = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    runs = instance["concurrency"]["runs"]
    check(
        queue["maxConcurrentRuns"] == runs["max_concurrent_runs"]
        and queue["tagConcurrencyLimits"] == runs["tag_concurrency_limits"],
        f"queue limits as docker/dagster.yaml (max {runs['max_concurrent_runs']}, retraining 1)",
    )
    retries = values["dagsterDaemon"]["runRetries"]
    check(
        retries == {"enabled": True, "maxRetries": instance["run_retries"]["max_retries"]},
        "run retries as docker/dagster.yaml",
    )

    def password_keys(node, path=""):
        if isinstance(node, dict):
            for key, value in node.items():
                if "password" in str(key).lower() and isinstance(value, str) and value:
                    yield f"{path}{key}"
                yield from password_keys(value, f"{path}{key}.")
        elif isinstance(node, list):
            for item in node:
                yield from password_keys(item, path)

    found = list(password_keys(values))
    check(not found, "no password value in values.yaml" + (f": {found}" if found else ""))

    spec = job["spec"]
    container = spec["template"]["spec"]["containers"][0]
    command = " ".join(container["command"] + container["args"])
    check(
        spec["completionMode"] == "Indexed" and spec["parallelism"] >= 2,
        "search workers: an Indexed Job of parallel pods",
    )
    check(
        "python -m stock_assets.lib.search_workers" in command
        and "JOB_COMPLETION_INDEX" in command
        and all(flag in command for flag in ("--study", "--arrays", "--n-trials", "--seed")),
        "each pod joins the study with its own seed",
    )
    check(
        any(
            e.get("secretRef", {}).get("name") in {s["name"] for s in deployment["envSecrets"]}
            for e in container["envFrom"]
        ),
        "workers read the study's storage URL from the same Secret",
    )

    if args.schema:
        import jsonschema

        schema = json.loads(Path(args.schema).read_text())
        merged = values
        if args.chart_values:
            merged = deep_merge(yaml.safe_load(Path(args.chart_values).read_text()), values)
        validator = jsonschema.Draft7Validator(offline_schema(schema, keep_required=bool(args.chart_values)))
        errors = sorted(validator.iter_errors(merged), key=lambda e: list(e.path))
        for error in errors[:20]:
            print(f"       {'/'.join(map(str, error.path))}: {error.message[:200]}")
        check(
            not errors,
            f"values validate against {args.schema}" + ("" if args.chart_values else " (override: no `required`)"),
        )
    if args.chart and shutil.which("helm"):
        proc = subprocess.run(
            ["helm", "template", "dagster", args.chart, "-f", args.values], capture_output=True, text=True
        )
        check(
            proc.returncode == 0,
            f"helm template {args.chart} -f {args.values}" + (f": {proc.stderr[-500:]}" if proc.returncode else ""),
        )
    elif not args.schema:
        print("  (no chart schema given: the chart's own schema check is not run offline; see --schema)")

    print(f"helm values: {len(failures)} failed" if failures else "helm values: all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
