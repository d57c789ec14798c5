#!/usr/bin/env python3
"""The stack half of `make deploy-check` (docker/deploy_check.sh prepares the engine and the images,
then runs this with plain python3: standard library only, no project virtualenv).

Brings docker/docker-compose.yml up with a generated env file of random passwords, waits for every
healthcheck, and drives the deployed webserver's GraphQL API the way the UI does:

  history   launchPartitionBackfill of raw_prices + processed_features over the first HISTORY
            sessions (the lookback prices the features and the training window need)
  backfill  launchPartitionBackfill of raw_prices + processed_features over the next 60 sessions
  daily     launchRun daily_job for the last of those sessions (the dagster/partition tag)
  retrain   launchRun retraining_job for the same session with a tiny search and fit budget

then checks the warehouse rows in the stack's PostgreSQL, the champion alias through the MLflow
server's REST API, that the promotion gate decided (its asset check evaluation), that every run ran
in a container of its own (the docker/container_id tag) that is gone afterwards, and the queue
limits. It restarts the stack (down without -v, up) and checks that nothing was lost, checks the
images for secrets and the containers' users, and prints the timings table. Cleanup is the shell
script's (trap), whatever happens here.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

HISTORY = 360  # sessions before the backfill: feature lookback (260) + enough rows for a 150-session window
BACKFILL = 60
MODEL = "stock_lstm"  # ModelRegistryResource.model_name
GATE = "promotion_gate"  # the asset check on candidate_model
SERVICES = ("postgres", "mlflow", "code", "webserver", "daemon")
APP_SERVICES = ("mlflow", "code", "webserver", "daemon")
# A tiny retraining: the run config fields of stock_assets/defs/training/config.py.
RETRAINING_CONFIG = {
    "ops": {
        "training_datasets": {"config": {"training_window": 150}},
        "best_params": {
            "config": {
                "n_trials": 2,
                "max_epochs": 2,
                "patience": 1,
                "timeout_seconds": 300,
                "search_workers": 1,
                "hidden_sizes": [16],
                "batch_sizes": [64],
                "sequence_lengths": [10],
            }
        },
        "candidate_model": {"config": {"max_epochs": 2, "patience": 1}},
    }
}
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


class CheckFailed(Exception):
    pass


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} deploy-check: {message}", flush=True)


def run(*cmd: str, check: bool = True, timeout: float = 600, input: str | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise CheckFailed(f"{' '.join(cmd[:6])} ... exited {proc.returncode}: {proc.stderr.strip()[-1500:]}")
    return proc.stdout


def read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------------
# The stack
# ---------------------------------------------------------------------------------------------------
class Stack:
    def __init__(self, args):
        self.args = args
        self.compose_cmd = args.compose.split()
        self.env_file = os.path.join(args.scratch, "stack.env")
        self.superuser = "postgres"
        self.app_user = "stock_assets"
        # Random passwords. The app password deliberately holds URL characters: the entrypoint must
        # percent-encode it into the database URLs (check-secrets.sh). The rest is URL-safe.
        self.superuser_password = secrets.token_urlsafe(24)
        self.app_password = secrets.token_urlsafe(18) + "@:/%?"
        self.web_port, self.mlflow_port = free_port(), free_port()
        self.web = f"http://127.0.0.1:{self.web_port}"
        self.mlflow = f"http://127.0.0.1:{self.mlflow_port}"
        self.network = f"{args.project}_default"

    def write_env(self) -> None:
        lines = {
            "COMPOSE_PROJECT_NAME": self.args.project,
            "APP_IMAGE": self.args.app_image,
            "POSTGRES_IMAGE": self.args.postgres_image,
            "POSTGRES_SUPERUSER": self.superuser,
            "POSTGRES_SUPERUSER_PASSWORD": self.superuser_password,
            "POSTGRES_APP_USER": self.app_user,
            "POSTGRES_APP_PASSWORD": self.app_password,
            "STOCK_ASSETS_SOURCE": "sample",
            "STOCK_ASSETS_TICKERS": "AAPL,MSFT,IBM,GOOG",
            "DAGSTER_WEBSERVER_PORT": str(self.web_port),
            "MLFLOW_PORT": str(self.mlflow_port),
            "MLFLOW_WORKERS": "2",
            "DOCKER_SOCKET": self.args.socket,
            "DOCKER_SOCKET_GID": str(self.args.socket_gid),
        }
        fd = os.open(self.env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("".join(f"{k}={v}\n" for k, v in lines.items()))

    def compose(self, *cmd: str, timeout: float = 900) -> str:
        full = [
            *self.compose_cmd,
            "-p",
            self.args.project,
            "-f",
            os.path.join(self.args.repo, "docker", "docker-compose.yml"),
            "--env-file",
            self.env_file,
            *cmd,
        ]
        # Only the env file decides: the caller's STOCK_ASSETS_*, POSTGRES_*, ... would override it.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(
                ("STOCK_ASSETS_", "POSTGRES_", "COMPOSE_", "DAGSTER_", "MLFLOW_", "APP_", "DOCKER_SOCKET")
            )
        }
        proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=env)
        if proc.returncode != 0:
            raise CheckFailed(f"compose {' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr.strip()[-3000:]}")
        return proc.stdout

    def containers(self) -> dict[str, str]:
        """service -> container id, from the compose labels."""
        out = run(
            "docker",
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            f"label=com.docker.compose.project={self.args.project}",
            "--format",
            '{{.ID}}\t{{.Label "com.docker.compose.service"}}',
        )
        return {svc: cid for cid, svc in (line.split("\t") for line in out.splitlines() if line.strip())}

    def health(self) -> dict[str, str]:
        states = {}
        for svc, cid in self.containers().items():
            out = run(
                "docker",
                "inspect",
                "-f",
                "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
                cid,
                check=False,
            ).split()
            states[svc] = out[1] if len(out) > 1 else (out[0] if out else "gone")
        return states

    def up_and_healthy(self, timeout: float = 900) -> None:
        try:
            self.compose("up", "-d", "--no-build", timeout=timeout)
        except CheckFailed as exc:
            raise CheckFailed(f"{exc}\nhealth: {self.health()}") from None

        def healthy():
            states = self.health()
            bad = {s: v for s, v in states.items() if v in ("unhealthy", "exited", "dead")}
            if bad:
                raise CheckFailed(f"services not healthy: {bad}")
            return set(states) == set(SERVICES) and all(v == "healthy" for v in states.values())

        wait_for(healthy, timeout, "every healthcheck", interval=2)

    def psql(self, db: str, sql: str) -> list[list[str]]:
        cid = self.containers()["postgres"]
        out = run(
            "docker",
            "exec",
            "-i",
            cid,
            "psql",
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-F",
            "\t",
            "-U",
            self.superuser,
            "-d",
            db,
            input=sql,
        )
        return [line.split("\t") for line in out.splitlines() if line]

    def logs_tail(self, lines: int = 40) -> str:
        try:
            return self.compose("logs", "--no-color", f"--tail={lines}", timeout=120)
        except Exception as exc:
            return f"(no logs: {exc})"


# ---------------------------------------------------------------------------------------------------
# HTTP: GraphQL and MLflow REST
# ---------------------------------------------------------------------------------------------------
def http_json(url: str, payload: dict | None = None, timeout: float = 120) -> dict:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise CheckFailed(f"{url}: HTTP {exc.code}: {exc.read().decode(errors='replace')[:1000]}") from None


class Dagster:
    def __init__(self, base: str):
        self.base = base

    def gql(self, query: str, variables: dict | None = None) -> dict:
        payload = http_json(f"{self.base}/graphql", {"query": query, "variables": variables or {}})
        if payload.get("errors"):
            raise CheckFailed(f"GraphQL errors: {json.dumps(payload['errors'])[:2000]}")
        return payload["data"]

    def repository(self) -> tuple[str, str]:
        data = self.gql(
            "{ repositoriesOrError { __typename ... on RepositoryConnection { nodes { name location { name } } } } }"
        )
        nodes = data["repositoriesOrError"].get("nodes") or []
        if not nodes:
            raise CheckFailed(f"no repository loaded: {data}")
        return nodes[0]["location"]["name"], nodes[0]["name"]

    def partition_keys(self) -> list[str]:
        data = self.gql(
            'query { assetNodeOrError(assetKey: {path: ["raw_prices"]}) { ... on AssetNode { partitionKeys } } }'
        )
        return data["assetNodeOrError"]["partitionKeys"]

    def backfill(self, keys: list[str], timeout: float) -> list[dict]:
        params = {
            "assetSelection": [{"path": ["raw_prices"]}, {"path": ["processed_features"]}],
            "partitionNames": keys,
            "fromFailure": False,
            "tags": [],
        }
        launched = self.gql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise CheckFailed(f"launchPartitionBackfill: {launched}")
        backfill_id = launched["backfillId"]

        def finished():
            data = self.gql(BACKFILL_STATUS, {"id": backfill_id})
            status = data["partitionBackfillOrError"]["status"]
            return data if status not in ("REQUESTED", "CANCELING", "FAILING") else None

        data = wait_for(finished, timeout, f"backfill {backfill_id}", interval=3)
        status = data["partitionBackfillOrError"]["status"]
        runs = data["runsOrError"]["results"]
        if status not in ("COMPLETED", "COMPLETED_SUCCESS") or not runs or any(r["status"] != "SUCCESS" for r in runs):
            for r in runs:
                if r["status"] != "SUCCESS":
                    raise CheckFailed(
                        f"backfill {backfill_id} {status}: run {r['runId']} {r['status']}:\n{self.errors(r['runId'])}"
                    )
            raise CheckFailed(f"backfill {backfill_id} ended {status} with runs {runs}")
        return runs

    def launch(
        self, location: str, repository: str, job: str, partition: str, run_config: dict, timeout: float
    ) -> dict:
        params = {
            "selector": {"repositoryLocationName": location, "repositoryName": repository, "jobName": job},
            "runConfigData": run_config,
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
        }
        launched = self.gql(LAUNCH_RUN, {"params": params})["launchRun"]
        if launched["__typename"] != "LaunchRunSuccess":
            raise CheckFailed(f"launchRun {job}: {json.dumps(launched)[:2000]}")
        run_id = launched["run"]["runId"]

        def finished():
            found = self.gql(RUN_STATUS, {"id": run_id})["runOrError"]
            return found if found.get("status") in TERMINAL else None

        found = wait_for(finished, timeout, f"{job} run {run_id}", interval=3)
        if found["status"] != "SUCCESS":
            raise CheckFailed(f"{job} run {run_id} ended {found['status']}:\n{self.errors(run_id)}")
        return found

    def events(self, run_id: str) -> list[dict]:
        events, cursor = [], None
        while True:
            data = self.gql(RUN_EVENTS, {"id": run_id, "cursor": cursor})["logsForRun"]
            events += data.get("events") or []
            if not data.get("hasMore"):
                return events
            cursor = data["cursor"]

    def errors(self, run_id: str) -> str:
        """The run's error events: message, the cause chain and the innermost stack's tail."""
        try:
            lines = []
            for event in self.events(run_id):
                error = event.get("error") or {}
                if event.get("level") != "ERROR" and not error:
                    continue
                lines.append(f"  {event.get('stepKey') or ''} {event.get('message', '')[:500]}")
                chain = [error, *(link["error"] for link in error.get("errorChain") or [])] if error else []
                for link in chain:
                    lines.append(f"    {link['message'].strip()[:1500]}")
                if chain and chain[-1].get("stack"):
                    lines += ["      " + frame.strip()[:300] for frame in chain[-1]["stack"][-4:]]
            return "\n".join(lines[-60:]) or "  (no error events)"
        except Exception as exc:
            return f"  (events unavailable: {exc})"


LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status numPartitions } }
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    ... on Runs { results { runId status tags { key value } } }
  }
}"""
LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}"""
RUN_STATUS = """
query Run($id: ID!) {
  runOrError(runId: $id) { __typename ... on Run { runId status jobName tags { key value } } }
}"""
RUN_EVENTS = """
fragment Err on PythonError { message stack errorChain { error { message stack } } }
query Events($id: ID!, $cursor: String) {
  logsForRun(runId: $id, afterCursor: $cursor) {
    __typename
    ... on EventConnection {
      cursor hasMore
      events {
        __typename
        ... on MessageEvent { message level stepKey }
        ... on ExecutionStepFailureEvent { error { ...Err } }
        ... on RunFailureEvent { error { ...Err } }
        ... on AssetCheckEvaluationEvent { evaluation { checkName success partition } }
      }
    }
  }
}"""
INSTANCE = """
{ instance { runQueuingSupported runLauncher { name } runQueueConfig { maxConcurrentRuns tagConcurrencyLimitsYaml } } }
"""
RUNS = """
{ runsOrError { ... on Runs { results { runId status jobName } } } }
"""


class Mlflow:
    def __init__(self, base: str):
        self.base = base

    def get(self, path: str, **params) -> dict:
        return http_json(f"{self.base}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(params)}")

    def post(self, path: str, payload: dict) -> dict:
        return http_json(f"{self.base}/api/2.0/mlflow/{path}", payload)

    def champion(self) -> dict:
        return self.get("registered-models/alias", name=MODEL, alias="champion")["model_version"]

    def state(self) -> dict:
        experiments = self.post("experiments/search", {"max_results": 1000}).get("experiments", [])
        run_ids, token = [], None
        while True:
            body = {
                "experiment_ids": [e["experiment_id"] for e in experiments],
                "max_results": 1000,
                "run_view_type": "ALL",
            }
            if token:
                body["page_token"] = token
            page = self.post("runs/search", body)
            run_ids += [r["info"]["run_id"] for r in page.get("runs", [])]
            token = page.get("next_page_token")
            if not token:
                break
        versions = self.get("model-versions/search", filter=f"name='{MODEL}'", max_results=1000).get(
            "model_versions", []
        )
        model = self.get("registered-models/get", name=MODEL)["registered_model"]
        return {
            "experiments": sorted(e["name"] for e in experiments),
            "runs": sorted(run_ids),
            "versions": sorted((v["version"], v["run_id"], v.get("current_stage", "")) for v in versions),
            "aliases": sorted((a["alias"], a["version"]) for a in model.get("aliases", [])),
        }


# ---------------------------------------------------------------------------------------------------
# Memory and users of every container on the stack's network (the services and the run containers)
# ---------------------------------------------------------------------------------------------------
class Sampler(threading.Thread):
    """Peak memory per service and per run container, and each container's user. Reads the engine's
    cgroups directly where they are local (cheap: a few files a second); names a container once, with
    one `docker inspect`. Elsewhere falls back to `docker stats` every 5 s."""

    CGROUP_ROOTS = ("/sys/fs/cgroup/memory/docker", "/sys/fs/cgroup/docker")  # cgroup v1, v2 (cgroupfs driver)

    def __init__(self, network: str):
        super().__init__(daemon=True)
        self.network = network
        self.peak: dict[str, int] = {}
        self.users: dict[str, set] = {}
        self.names: dict[str, str | None] = {}  # container id -> name in the table (None: not ours)
        self.stop = threading.Event()
        self.root = next((r for r in self.CGROUP_ROOTS if os.path.isdir(r)), None)

    @staticmethod
    def usage(base: str) -> int | None:
        """What `docker stats` shows: usage minus inactive file cache."""
        try:
            if os.path.exists(f"{base}/memory.usage_in_bytes"):
                usage, key = int(read_text(f"{base}/memory.usage_in_bytes")), "total_inactive_file"
            else:
                usage, key = int(read_text(f"{base}/memory.current")), "inactive_file"
            stat = dict(line.split() for line in read_text(f"{base}/memory.stat").splitlines())
            return usage - int(stat.get(key, 0))
        except (OSError, ValueError):
            return None

    def name(self, cid: str) -> str | None:
        if cid not in self.names:
            fmt = (
                '{{json .NetworkSettings.Networks}}\t{{index .Config.Labels "com.docker.compose.service"}}\t'
                '{{index .Config.Labels "dagster/job_name"}}\t{{.Config.User}}\t{{.State.Pid}}'
            )
            out = run("docker", "inspect", "-f", fmt, cid, check=False).strip().split("\t")
            if len(out) != 5 or self.network not in out[0]:
                self.names[cid] = None  # another engine's, or not on the stack's network
                return None
            _, service, job, user, pid = out
            # Backfill runs execute Dagster's implicit asset job.
            name = service or (f"run: {'backfill' if job == '__ASSET_JOB' else job}" if job else cid[:12])
            uid = None
            try:
                status = read_text(f"/proc/{pid}/status").splitlines()
                uid = next(line.split()[1] for line in status if line.startswith("Uid:"))
            except (OSError, StopIteration):
                pass
            self.users.setdefault(name, set()).add((user, uid))
            self.names[cid] = name
        return self.names[cid]

    def record(self, name: str, used: int | None) -> None:
        if used is not None:
            self.peak[name] = max(self.peak.get(name, 0), used)

    def sample(self) -> None:
        if self.root:
            for cid in os.listdir(self.root):
                if len(cid) == 64 and (name := self.name(cid)):
                    self.record(name, self.usage(f"{self.root}/{cid}"))
            return
        out = run("docker", "ps", "-q", "--no-trunc", "--filter", f"network={self.network}", check=False)
        for cid in out.split():
            if name := self.name(cid):
                stats = run("docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", cid, check=False)
                self.record(name, parse_size(stats.split("/")[0]) if stats.strip() else None)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.sample()
            except Exception:
                pass
            self.stop.wait(1.0 if self.root else 5.0)


def parse_size(text: str) -> int | None:
    text = text.strip()
    for unit, factor in (
        ("GiB", 2**30),
        ("MiB", 2**20),
        ("KiB", 2**10),
        ("GB", 10**9),
        ("MB", 10**6),
        ("kB", 10**3),
        ("B", 1),
    ):
        if text.endswith(unit):
            try:
                return int(float(text[: -len(unit)]) * factor)
            except ValueError:
                return None
    return None


# ---------------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------------
def check_run_container(run_info: dict, what: str) -> str:
    tags = {t["key"]: t["value"] for t in run_info["tags"]}
    cid = tags.get("docker/container_id")
    if not cid:
        raise CheckFailed(f"{what} run {run_info['runId']} has no docker/container_id tag: not launched in a container")

    def gone():
        return subprocess.run(["docker", "inspect", cid], capture_output=True).returncode != 0

    wait_for(gone, 60, f"{what}'s container {cid[:12]} to be removed (auto_remove)", interval=1)
    return cid


def snapshot(stack: Stack, dagster: Dagster, mlflow: Mlflow) -> dict:
    """Everything the restart must keep."""
    tables = [
        r[0] for r in stack.psql("warehouse", "select tablename from pg_tables where schemaname = 'public' order by 1")
    ]
    warehouse = {t: int(stack.psql("warehouse", f'select count(*) from "{t}"')[0][0]) for t in tables}
    runs = stack.psql("dagster", "select run_id, status from runs order by run_id")
    events = int(stack.psql("dagster", "select count(*) from event_logs")[0][0])
    checks = stack.psql(
        "dagster", "select check_name, partition, execution_status from asset_check_executions order by 1, 2"
    )
    studies = stack.psql(
        "optuna",
        "select s.study_name, count(t.trial_id), count(t.trial_id) filter (where t.state = 'COMPLETE') "
        "from studies s left join trials t using (study_id) group by 1 order by 1",
    )
    graphql_runs = sorted((r["runId"], r["status"]) for r in dagster.gql(RUNS)["runsOrError"]["results"])
    return {
        "warehouse rows": warehouse,
        "dagster runs": [tuple(r) for r in runs],
        "dagster runs (GraphQL)": graphql_runs,
        "event log entries": events,
        "asset check executions": [tuple(c) for c in checks],
        "optuna studies (trials, complete)": [tuple(s) for s in studies],
        "mlflow": mlflow.state(),
        "champion": mlflow.champion()["version"],
    }


def scan_image(
    image: str, needles: dict[str, bytes], forbidden_names: tuple[str, ...], forbidden_file: bytes | None
) -> list[str]:
    """Secrets in an image: its history and config, then every file of its file system."""
    problems = []
    history = run("docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image)
    inspect = run("docker", "image", "inspect", image)
    for what, needle in needles.items():
        text = needle.decode()
        if text in history:
            problems.append(f"{image}: docker history holds {what}")
        if text in inspect:
            problems.append(f"{image}: docker image inspect holds {what}")
    cid = run("docker", "create", image, "true").strip()
    try:
        proc = subprocess.Popen(["docker", "export", cid], stdout=subprocess.PIPE)
        overlap = max(len(n) for n in needles.values())
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                if any(part in member.name for part in forbidden_names):
                    problems.append(f"{image}: holds {member.name}")
                if not member.isfile():
                    continue
                f = tar.extractfile(member)
                tail = b""
                whole = forbidden_file is not None and member.size == len(forbidden_file)
                data_all = b"" if whole else None
                while chunk := f.read(1 << 20):
                    window = tail + chunk
                    for what, needle in needles.items():
                        if needle in window:
                            problems.append(f"{image}: {member.name} holds {what}")
                    tail = window[-overlap:]
                    if data_all is not None:
                        data_all += chunk
                if data_all is not None and data_all == forbidden_file:
                    problems.append(f"{image}: {member.name} is the machine's CA bundle")
        proc.wait(timeout=60)
    finally:
        run("docker", "rm", "-f", cid, check=False)
    return sorted(set(problems))


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


# ---------------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in (
        "repo",
        "scratch",
        "project",
        "compose",
        "app-image",
        "postgres-image",
        "python-image",
        "builder-base",
        "ca-bundle",
        "socket",
        "timings",
    ):
        parser.add_argument(f"--{name}", default="")
    parser.add_argument("--socket-gid", type=int, required=True)
    parser.add_argument("--own-engine", default="0")
    args = parser.parse_args()

    timings = {}
    for line in read_text(args.timings).splitlines():
        key, seconds = line.split()
        timings[key] = int(seconds)

    stack = Stack(args)
    dagster, mlflow = Dagster(stack.web), Mlflow(stack.mlflow)
    sampler = Sampler(stack.network)
    stack.write_env()

    def phase(name: str, message: str):
        log(message)
        return name, time.monotonic()

    def done(token, note: str = "done") -> float:
        name, t0 = token
        timings[name] = time.monotonic() - t0
        log(f"  {note} ({timings[name]:.0f} s)")
        return timings[name]

    try:
        # -- up ------------------------------------------------------------------------------------
        token = phase("healthy", f"stack up (project {args.project}; webserver {stack.web}, MLflow {stack.mlflow})")
        sampler.start()
        stack.up_and_healthy()
        done(token, "every healthcheck passed")

        instance = dagster.gql(INSTANCE)["instance"]
        queue = instance["runQueueConfig"] or {}
        if instance["runLauncher"]["name"] != "DockerRunLauncher":
            raise CheckFailed(f"run launcher is {instance['runLauncher']['name']}, not DockerRunLauncher")
        if queue.get("maxConcurrentRuns") != 4 or "retraining" not in (queue.get("tagConcurrencyLimitsYaml") or ""):
            raise CheckFailed(f"queue limits changed: {queue}")
        log(
            f"  run launcher {instance['runLauncher']['name']}, queue: max {queue['maxConcurrentRuns']} runs, "
            "1 with stock_assets/run_kind=retraining"
        )
        location, repository = dagster.repository()
        keys = dagster.partition_keys()
        history, backfilled = keys[:HISTORY], keys[HISTORY : HISTORY + BACKFILL]
        day = backfilled[-1]

        # -- runs ----------------------------------------------------------------------------------
        containers = {}
        token = phase(
            "history",
            f"history: backfill raw_prices + processed_features {history[0]}..{history[-1]} ({HISTORY} sessions)",
        )
        runs = dagster.backfill(history, timeout=1200)
        containers["history"] = [check_run_container(r, "history backfill") for r in runs]
        done(token, f"{len(runs)} run(s), each in its own container, removed after it")

        token = phase(
            "backfill", f"backfill: raw_prices + processed_features {backfilled[0]}..{day} ({BACKFILL} sessions)"
        )
        runs = dagster.backfill(backfilled, timeout=1200)
        containers["backfill"] = [check_run_container(r, "backfill") for r in runs]
        done(token, f"{len(runs)} run(s), each in its own container, removed after it")

        token = phase("daily", f"daily_job for {day}")
        daily = dagster.launch(location, repository, "daily_job", day, {}, timeout=900)
        containers["daily"] = [check_run_container(daily, "daily_job")]
        done(token, f"run {daily['runId'][:8]} SUCCESS in container {containers['daily'][0][:12]} (removed)")

        token = phase("retraining", f"retraining_job for {day} (2 trials x 2 epochs, fit 2 epochs)")
        retraining = dagster.launch(location, repository, "retraining_job", day, RETRAINING_CONFIG, timeout=1500)
        containers["retraining"] = [check_run_container(retraining, "retraining_job")]
        done(token, f"run {retraining['runId'][:8]} SUCCESS in container {containers['retraining'][0][:12]} (removed)")
        tags = {t["key"]: t["value"] for t in retraining["tags"]}
        if tags.get("stock_assets/run_kind") != "retraining":
            raise CheckFailed(f"retraining run tags lack stock_assets/run_kind=retraining: {tags}")

        # -- what the runs left --------------------------------------------------------------------
        log("checks: warehouse rows, champion, promotion gate")
        rows = {
            t: int(stack.psql("warehouse", f'select count(*) from "{t}"')[0][0])
            for t in ("raw_prices", "processed_features")
        }
        expected_prices = 4 * (HISTORY + BACKFILL)
        if rows["raw_prices"] != expected_prices:
            raise CheckFailed(
                f"raw_prices holds {rows['raw_prices']} rows, expected {expected_prices} "
                f"(4 tickers x {HISTORY + BACKFILL} sessions)"
            )
        feature_days = int(
            stack.psql(
                "warehouse", f"select count(distinct date) from processed_features where date >= '{backfilled[0]}'"
            )[0][0]
        )
        if feature_days != BACKFILL:
            raise CheckFailed(f"processed_features covers {feature_days} of the {BACKFILL} backfilled sessions")
        predictions = int(stack.psql("warehouse", "select count(*) from daily_predictions")[0][0])
        if predictions == 0:
            raise CheckFailed("daily_job wrote no daily_predictions")
        log(
            f"  warehouse: raw_prices {rows['raw_prices']} rows, processed_features {rows['processed_features']} rows "
            f"({feature_days}/{BACKFILL} backfilled sessions), daily_predictions {predictions}"
        )
        champion = mlflow.champion()
        log(f"  MLflow: {MODEL}@champion = version {champion['version']} (run {champion['run_id'][:8]})")
        gate = [
            e["evaluation"]
            for e in dagster.events(retraining["runId"])
            if e["__typename"] == "AssetCheckEvaluationEvent" and e["evaluation"]["checkName"] == GATE
        ]
        if not gate:
            raise CheckFailed(f"the retraining run recorded no {GATE} evaluation")
        executions = stack.psql(
            "dagster",
            f"select execution_status from asset_check_executions where check_name = '{GATE}' and partition = '{day}'",
        )
        if not executions or executions[-1][0] not in ("SUCCEEDED", "FAILED"):
            raise CheckFailed(f"no decided {GATE} execution for {day}: {executions}")
        log(
            f"  promotion gate decided for {day}: {'passed' if gate[-1]['success'] else 'rejected'} "
            f"(asset check execution {executions[-1][0]})"
        )

        # -- restart -------------------------------------------------------------------------------
        before = snapshot(stack, dagster, mlflow)
        token = phase("restart", "restart: down (volumes kept), up")
        stack.compose("down", "-t", "30", timeout=300)
        stack.up_and_healthy()
        done(token, "healthy again")
        after = snapshot(stack, dagster, mlflow)
        lost = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
        if lost:
            raise CheckFailed("the restart changed: " + json.dumps(lost, default=str)[:3000])
        m = before["mlflow"]
        log(
            f"  kept: {len(before['dagster runs'])} runs, {before['event log entries']} event log entries, "
            f"{sum(before['warehouse rows'].values())} warehouse rows in {len(before['warehouse rows'])} tables, "
            f"{len(m['runs'])} MLflow runs, {len(m['versions'])} versions, aliases {m['aliases']}, "
            f"Optuna {before['optuna studies (trials, complete)']}"
        )

        # -- secrets and users ---------------------------------------------------------------------
        log("checks: secrets in the images, container users")
        needles = {
            "the superuser password": stack.superuser_password.encode(),
            "the app password": stack.app_password.encode(),
            "the app password (URL-encoded)": urllib.parse.quote(stack.app_password, safe="").encode(),
        }
        ca = None
        if args.builder_base and os.path.exists(args.ca_bundle):
            with open(args.ca_bundle, "rb") as f:
                ca = f.read()
        problems = []
        for image in (args.app_image, args.postgres_image):
            problems += scan_image(image, needles, ("wheelhouse/torch", "stock_assets-build-ca"), ca)
        if args.builder_base:
            builder_layers = json.loads(
                run("docker", "image", "inspect", "-f", "{{json .RootFS.Layers}}", args.builder_base)
            )
            app_layers = json.loads(run("docker", "image", "inspect", "-f", "{{json .RootFS.Layers}}", args.app_image))
            if builder_layers[-1] in app_layers:
                problems.append(f"{args.app_image} contains the builder base's CA layer")
        if problems:
            raise CheckFailed("secrets in images:\n  " + "\n  ".join(problems))
        log(
            f"  no password in {args.app_image} or {args.postgres_image} (history, config, every file)"
            + ("; the machine's CA bundle only in the builder stage" if ca else "")
        )
        service_users = {}
        for svc, cid in stack.containers().items():
            # PID 1's user: for the app services the image's USER (init: true keeps docker-init as pid
            # 1, under that user); postgres starts as root like the official image and its entrypoint
            # re-executes as `postgres`, so pid 1 is the server. `docker exec` gets the image's USER.
            pid1 = run("docker", "exec", cid, "sh", "-c", "grep '^Uid:' /proc/1/status").split()[1]
            uid = run("docker", "exec", cid, "sh", "-c", "id -u").strip()
            if pid1 == "0" or (svc in APP_SERVICES and uid == "0"):
                raise CheckFailed(f"{svc} runs as root (pid 1 uid {pid1}, exec uid {uid})")
            service_users[svc] = pid1
        for name, users in sampler.users.items():
            if name.startswith("run:") and any(u[1] in (None, "0") for u in users):
                raise CheckFailed(f"{name} containers ran as {users}")
        runs_users = {n: sorted({u[1] for u in us if u[1]}) for n, us in sampler.users.items() if n.startswith("run:")}
        unseen = {"run: backfill", "run: daily_job", "run: retraining_job"} - set(runs_users)
        if unseen:
            raise CheckFailed(f"no container seen for {sorted(unseen)}")
        log(
            "  users (uid of pid 1): "
            + ", ".join(f"{n} {uid}" for n, uid in service_users.items())
            + ", "
            + ", ".join(f"{n} {'/'.join(uids)}" for n, uids in sorted(runs_users.items()))
        )
    except CheckFailed as exc:
        log(f"FAILED: {exc}")
        print("---- container logs (tail) ----\n" + stack.logs_tail(), flush=True)
        return 1
    finally:
        sampler.stop.set()

    # -- the table ---------------------------------------------------------------------------------
    size = int(run("docker", "image", "inspect", "-f", "{{.Size}}", args.app_image).strip())
    pg_size = int(run("docker", "image", "inspect", "-f", "{{.Size}}", args.postgres_image).strip())
    rows = [
        ("base images s", f"{timings.get('bases', 0):.0f}"),
        ("build s", f"{timings.get('build', 0):.0f}"),
        ("stack healthy s", f"{timings['healthy']:.0f}"),
        (f"history backfill s ({HISTORY} sessions)", f"{timings['history']:.0f}"),
        (f"backfill s ({BACKFILL} sessions)", f"{timings['backfill']:.0f}"),
        ("daily_job s", f"{timings['daily']:.0f}"),
        ("retraining s", f"{timings['retraining']:.0f}"),
        ("restart s", f"{timings['restart']:.0f}"),
        ("image size (app)", fmt_bytes(size)),
        ("image size (postgres)", fmt_bytes(pg_size)),
    ]
    order = [*SERVICES, "run: backfill", "run: daily_job", "run: retraining_job"]
    for name in sorted(sampler.peak, key=lambda n: (order.index(n) if n in order else len(order), n)):
        rows.append((f"peak memory {name}", fmt_bytes(sampler.peak[name])))
    width = max(len(k) for k, _ in rows)
    print()
    print(f"| {'deploy-check'.ljust(width)} | value      |")
    print(f"|{'-' * (width + 2)}|------------|")
    for key, value in rows:
        print(f"| {key.ljust(width)} | {value.rjust(10)} |")
    print(
        f"\n(python base: {args.python_image}; postgres: {args.postgres_image}; "
        "peak memory: docker stats' usage, sampled every second)"
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
