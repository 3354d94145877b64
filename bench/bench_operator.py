"""The operator at fleet scale on the real control plane: N PlantParticipants heartbeating, one round over all.

One control plane (etcd, kube-apiserver with an audit log, controller manager, scheduler) and a fake GPU node;
the hub chart `helm install`ed as the e2e tests do (operator and exchange as pods, i.e. real processes on this
machine), with the chart's default operator settings (poll every 5 s, heartbeat timeout 90 s) and N plants in
its values, so the chart makes the PlantParticipants and the plants' tokens. A light driver stands in for the N
agents: each heartbeats as `plantfed.plant.agent.loop.Agent.heartbeat_once` does (get its PlantParticipant,
merge-patch its status) at the agent's default interval, spread evenly, and once the round is open uploads a
small real update of the lineage's model (the bearing CNN) with its own token. Nothing of the hub is faked.

Measured, over an idle window (heartbeats only) and over the round (round applied -> Succeeded):
operator CPU seconds / wall seconds (from /proc), reconcile duration per resource (the operator's
`plantfed_reconcile_duration_seconds` histogram: p50/p99 interpolated within buckets, and how many passes took
over 2 s), API requests by verb and resource (the API server's audit log: the operator's ServiceAccount, and the
heartbeat driver), and the exchange's RSS now and at peak. Prints one JSON object last.

    python bench/bench_operator.py --plants 100          # bench/RESULTS.md "Operator at 100 plants"
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the control-plane harness, as the tests import it

from support.crds import apply_crds  # noqa: E402
from support.federation.hubdeploy import Hub, deploy_hub, plant_values, wait_hub_ready  # noqa: E402
from support.federation.rounds import create_lineage, round_manifest, wait_phase  # noqa: E402
from support.kube import wait_for  # noqa: E402
from support.kube.audit import read_events  # noqa: E402
from support.kube.environment import plant_nodes, start_clusters  # noqa: E402

from plantfed.contract.api.participant import PlantParticipant  # noqa: E402
from plantfed.contract.records import Codec, UpdateMeta  # noqa: E402
from plantfed.exchange import ExchangeClient, ExchangeError  # noqa: E402
from plantfed.formats import codecs  # noqa: E402
from plantfed.formats.atomic import file_sha256  # noqa: E402
from plantfed.plant.agent.config import AgentConfig  # noqa: E402
from plantfed.plant.agent.hub import Hub as AgentHub  # noqa: E402
from plantfed.plant.agent.loop import agent_version, rfc3339, utcnow  # noqa: E402

MODEL = "fleet"
AGENT_HEARTBEAT = next(f.default for f in dataclasses.fields(AgentConfig) if f.name == "heartbeat_seconds")
"""The agent's default --heartbeat-seconds."""
CHART_DEFAULTS = ("operator.heartbeatTimeoutSeconds=90", "operator.logLevel=INFO")
"""What the e2e tests shorten, put back to the chart's values.yaml (and --poll-seconds, default the chart's 5)."""
RECONCILE = "plantfed_reconcile_duration_seconds"


def find_pid(*needles: str) -> int:
    """The process whose command line holds every needle (pods on fake nodes are processes on this machine)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        text = [a.decode(errors="replace") for a in argv]
        if all(any(n in a for a in text) for n in needles):
            found.append(int(cmdline.parent.name))
    if len(found) != 1:
        raise LookupError(f"expected one process with {needles} in its command line, found {found}")
    return found[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat, clock ticks of 1/100 s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def memory_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise LookupError(f"no {field} in /proc/{pid}/status")


class Heartbeats:
    """N agents' heartbeats, as `Agent.heartbeat_once`: read the PlantParticipant, merge-patch its status."""

    def __init__(self, hub: Hub, plants: list[str], interval: float) -> None:
        self.hub, self.plants, self.interval = hub, plants, interval
        self.stop = threading.Event()
        self.sent = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="heartbeats", daemon=True)

    def beat(self, agent: AgentHub) -> None:
        pp = PlantParticipant.from_object(agent.participant())
        agent.patch_status(
            {
                "lastHeartbeatTime": rfc3339(utcnow()),
                "agentVersion": agent_version(),
                "observedGeneration": pp.metadata.generation,
            }
        )

    def _run(self) -> None:
        with self.hub.cluster.api_client() as api:
            agents = [AgentHub(api, self.hub.namespace, plant) for plant in self.plants]
            start = time.monotonic()
            beat = 0
            while not self.stop.is_set():
                # Every agent beats once on start-up, then plant i at start + (k + (i + 1) / N) * interval, k = 0, 1,
                # ...: evenly spread, as independent agents' timers are, at the steady rate from the first second.
                n, later = len(agents), beat - len(agents)
                due = start + (0.0 if later < 0 else self.interval * (later // n + (later % n + 1) / n))
                if self.stop.wait(max(0.0, due - time.monotonic())):
                    return
                try:
                    self.beat(agents[beat % len(agents)])
                    self.sent += 1
                except Exception as exc:  # an agent keeps beating through errors; count them
                    self.failed += 1
                    print(f"heartbeat failed: {exc}", file=sys.stderr)
                beat += 1

    def __enter__(self) -> Heartbeats:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join()


def all_ready(hub: Hub, count: int) -> bool:
    ready = 0
    for item in hub.list("plantparticipants"):
        conditions = (item.get("status") or {}).get("conditions") or []
        ready += any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return ready == count


def write_delta(base: Path, dest: Path, seed: int) -> Path:
    """A small real update of the base: noise of 1% on every float tensor, int8 as plants send by default."""
    g = torch.Generator().manual_seed(seed)
    delta = {n: torch.randn(t.shape, generator=g) * 0.01 for n, t in codecs.load_state(base).items()}
    codecs.write_update(codecs.encode_delta(delta, Codec.INT8), dest, Codec.INT8)
    return dest


def upload_all(hub: Hub, round_id: str, base: Path, version: int, plants: list[str], tmp: Path) -> None:
    """Every plant uploads its own update with its own token, a few at a time (as plants finishing training)."""

    def upload(i: int, plant: str) -> None:
        path = write_delta(base, tmp / f"{plant}.safetensors", seed=i)
        meta = UpdateMeta(
            plant=plant,
            round_id=round_id,
            base_version=version,
            num_samples=100,
            codec=Codec.INT8,
            metrics={"loss": 1.0},
            total_bytes=path.stat().st_size,
            sha256=file_sha256(path).hexdigest(),
        )
        with ExchangeClient(hub.exchange, hub.plant_tokens[plant], root_cert=hub.ca_pem) as client:
            client.upload_update(meta, path)

    with ThreadPoolExecutor(8) as pool:
        for done in [pool.submit(upload, i, p) for i, p in enumerate(plants)]:
            done.result()


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """The q-quantile of a cumulative histogram [(upper bound, count)], linear within its bucket."""
    total = buckets[-1][1]
    if total == 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower


def reconcile_stats(before: dict, after: dict) -> dict[str, dict[str, float]]:
    """Per resource: passes, p50/p99 and mean seconds, and passes over 2 s, between two scrapes."""
    out: dict[str, dict[str, float]] = {}

    def series(samples: dict, name: str) -> dict[frozenset, float]:
        return samples.get(name, {})

    resources = {dict(labels)["resource"] for labels in series(after, RECONCILE + "_count")}
    for resource in sorted(resources):
        buckets = []
        for labels, value in series(after, RECONCILE + "_bucket").items():
            d = dict(labels)
            if d["resource"] == resource:
                bound = float(d["le"])
                buckets.append((bound, value - series(before, RECONCILE + "_bucket").get(labels, 0.0)))
        buckets.sort()
        key = frozenset({("resource", resource)})
        count = series(after, RECONCILE + "_count")[key] - series(before, RECONCILE + "_count").get(key, 0.0)
        total = series(after, RECONCILE + "_sum")[key] - series(before, RECONCILE + "_sum").get(key, 0.0)
        within_2s = next(c for b, c in buckets if b == 2.0)
        out[resource] = {
            "passes": count,
            "p50_s": round(quantile(buckets, 0.5), 4),
            "p99_s": round(quantile(buckets, 0.99), 4),
            "mean_s": round(total / count, 4) if count else float("nan"),
            "over_2s": count - within_2s,
        }
    return out


@dataclasses.dataclass
class Window:
    """What the operator did between start() and stop(): CPU, wall, reconcile passes, API requests."""

    hub: Hub
    operator_pid: int
    seconds: float = 0.0
    cpu: float = 0.0
    reconcile: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    began: datetime | None = None
    ended: datetime | None = None

    @contextmanager
    def measure(self) -> Iterator[Window]:
        before, cpu0, t0 = self.hub.operator_metrics(), cpu_seconds(self.operator_pid), time.monotonic()
        self.began = utcnow()
        yield self
        self.ended = utcnow()
        self.seconds, self.cpu = time.monotonic() - t0, cpu_seconds(self.operator_pid) - cpu0
        self.reconcile = reconcile_stats(before, self.hub.operator_metrics())

    def requests(self, who: Callable[[str], bool]) -> dict[str, int]:
        """API requests in the window by `verb resource`, from the audit log, of the users `who` accepts."""
        counts: Counter[str] = Counter()
        log = self.hub.cluster.cluster.audit_log
        if log is None:  # an existing cluster (PLANTFED_TEST_KUBECONFIG): its audit log is not ours to read
            return {}
        for event in read_events(log):
            user = event.get("user", {}).get("username", "")
            at = datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
            if not who(user) or not (self.began <= at <= self.ended) or event.get("stage") == "ResponseStarted":
                continue
            ref = event.get("objectRef") or {}
            resource = ref.get("resource", event.get("requestURI", "?").split("?")[0])
            if ref.get("subresource"):
                resource += "/" + ref["subresource"]
            counts[f"{event['verb']} {resource}"] += 1
        return dict(counts.most_common())

    def summary(self, operator_user: str, driver_user: str) -> dict[str, Any]:
        operator = self.requests(lambda u: u == operator_user)
        return {
            "wall_s": round(self.seconds, 1),
            "operator_cpu_s": round(self.cpu, 2),
            "operator_cores": round(self.cpu / self.seconds, 3),
            "reconcile": self.reconcile,
            "operator_requests": operator,
            "operator_requests_total": sum(operator.values()),
            "heartbeat_requests": {
                k: v for k, v in self.requests(lambda u: u == driver_user).items() if "plantparticipants" in k
            },
        }


def run(plants_n: int, idle_seconds: float, heartbeat: float, poll: float, workdir: Path) -> dict[str, Any]:
    plants = [f"fleet-plant{i:03d}" for i in range(plants_n)]
    settings = (*CHART_DEFAULTS, f"operator.pollSeconds={poll:g}")
    (cluster,) = start_clusters(workdir, [("hub", plant_nodes("hub"))], audit=("hub",))
    try:
        apply_crds(cluster)
        namespace = cluster.create_namespace("fleet")
        hub = deploy_hub(cluster, namespace, plant_values(plants, "plant-data"), settings=settings)
        wait_hub_ready(hub)
        operator_pid = find_pid(f"--namespace={namespace}", "--store-claim")
        exchange_pid = find_pid("--store=/var/lib/plantfed/store", f"--listen=0.0.0.0:{hub.exchange_port}")
        exchange_started_mib = memory_mib(exchange_pid, "VmRSS")
        (operator_pod,) = hub.operator_pods()
        operator_user = f"system:serviceaccount:{namespace}:{operator_pod.spec.service_account_name}"
        driver_user = "plantfed-test-admin"  # the harness admin kubeconfig (support.kube.controlplane)
        with Heartbeats(hub, plants, heartbeat) as beats:
            wait_for(lambda: all_ready(hub, plants_n), timeout=heartbeat * 3, what=f"{plants_n} plants Ready")
            fm = create_lineage(hub, MODEL)
            version = fm["status"]["promotedVersion"]
            base = workdir / "base.safetensors"
            with ExchangeClient(hub.exchange, hub.plant_tokens[plants[0]], root_cert=hub.ca_pem) as client:
                client.download_model(MODEL, version, base)
            idle = Window(hub, operator_pid)
            with idle.measure():
                time.sleep(idle_seconds)  # the window is the measurement: heartbeats only, for this long
            round_window = Window(hub, operator_pid)
            with round_window.measure():
                hub.apply(
                    round_manifest(
                        hub,
                        f"{MODEL}-r1",
                        MODEL,
                        plants=plants,
                        minParticipants=plants_n,
                        promotion={"policy": "Always", "evaluationTimeoutSeconds": 0},
                    )
                )
                wait_for(
                    lambda: _exchange_round_open(hub, f"{MODEL}-r1"), timeout=300, what="the exchange round to open"
                )
                upload_all(hub, f"{MODEL}-r1", base, version, plants, workdir)
                done = wait_phase(hub, "federatedrounds", f"{MODEL}-r1", ("Succeeded",), timeout=600)
            uploaded = sum(p["state"] == "Uploaded" for p in done["status"]["plants"])
            failed_beats = beats.failed
        return {
            "plants": plants_n,
            "heartbeat_seconds": heartbeat,
            "operator_settings": list(settings),
            "heartbeats_failed": failed_beats,
            "round_uploaded": uploaded,
            "idle": idle.summary(operator_user, driver_user),
            "round": round_window.summary(operator_user, driver_user),
            "exchange_rss_started_mib": round(exchange_started_mib, 1),
            "exchange_rss_mib": round(memory_mib(exchange_pid, "VmRSS"), 1),
            "exchange_peak_rss_mib": round(memory_mib(exchange_pid, "VmHWM"), 1),
            "exchange_rss_anon_mib": round(memory_mib(exchange_pid, "RssAnon"), 1),  # the rest: mapped libraries
            "operator_rss_mib": round(memory_mib(operator_pid, "VmRSS"), 1),
        }
    finally:
        cluster.stop()


def _exchange_round_open(hub: Hub, round_id: str) -> bool:
    with hub.admin() as admin:
        try:
            admin.list_updates(round_id)
        except ExchangeError:
            return False
    return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plants", type=int, default=100)
    p.add_argument("--idle-seconds", type=float, default=60.0, help="heartbeats-only window measured first")
    p.add_argument("--heartbeat-seconds", type=float, default=AGENT_HEARTBEAT, help="default: the agent's")
    p.add_argument("--poll-seconds", type=float, default=5.0, help="the operator's; default: the chart's")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
        out = run(args.plants, args.idle_seconds, args.heartbeat_seconds, args.poll_seconds, Path(tmp))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
