"""Upload benchmark: one large plant update through the exchange against raw socket copies doing the same disk work.

Contenders, each timed from the first byte sent to the receiver's durable copy, with the CPU seconds both ends
used meanwhile (`*_cpu_s`: the work per byte, which a shared machine's load disturbs less than the wall time;
round robin over `--repeat` runs; the least of each is kept, the least disturbed; `*_paired_*` ratios pair each run
with the anchor's run of the same cycle and give their median and range, which a load that drifts between
cycles moves less):

* `tcp_plain`: a loopback TCP copy whose receiver discards the bytes (the wire alone);
* `tcp_durable`: the same, the receiver doing the hub's durable work: write to a file, sha256, fsync, and keep the
  file (as the hub keeps every committed update) until the bench ends;
* `tls_durable`: `tcp_durable` over TLS (Python's ssl, the hub's certificate): the like-for-like anchor for an
  exchange that always runs TLS;
* `exchange_format`: `ExchangeClient.upload_update` to the exchange as its own process
  (`python -m plantfed.exchange`, TLS) with `--payload-check=format`: the protocol's own cost;
* `exchange_update`: the same with the default `--payload-check=update`, which also checks the update against
  the round's base model (names, shapes, dtypes, NaN/Inf) before committing it.

The payload is a real update (float32 deltas of a model of `--size-mb`, several tensors) of a base model
published to each hub first (`publish_s`). Finally the hub is SIGKILLed at 50 % of an upload and restarted:
how many bytes the client sent again.

Usage: python bench/bench_upload.py [--size-mb 1024] [--repeat 3] [--workdir DIR]
A run that checks the bench works takes seconds: --size-mb 8 --repeat 1.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import ipaddress
import itertools
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from plantfed.contract.records import Codec, RoundRecord, UpdateMeta
from plantfed.exchange import AdminClient, ExchangeClient
from plantfed.formats import codecs
from plantfed.formats.atomic import file_sha256
from plantfed.formats.stream_writer import StreamingWriter, TensorSpec

ADMIN = "bench-admin-token"
PLANT_TOKEN = "bench-plant-token"
MODEL = "bench"
BLOCK = 1 << 20


def self_signed(workdir: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench-hub")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = workdir / "hub.crt", workdir / "hub.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------ payloads


def tensor_specs(size: int) -> dict[str, TensorSpec]:
    """float32 layers of up to 64 MiB each adding up to about `size` bytes."""
    specs: dict[str, TensorSpec] = {}
    left, width = size // 4, 4096
    while left >= width:
        rows = min(4096, left // width)
        specs[f"layers.{len(specs)}.weight"] = TensorSpec(torch.float32, (rows, width))
        left -= rows * width
    return specs or {"layers.0.weight": TensorSpec(torch.float32, (max(1, left),))}


def write_model_and_update(workdir: Path, size: int) -> tuple[Path, Path]:
    """A base model (zeros) and an update of it (random deltas), written tensor by tensor."""
    specs = tensor_specs(size)
    rng = np.random.default_rng(0)
    base, update = workdir / "base.safetensors", workdir / "update.safetensors"
    with StreamingWriter(base, specs, {codecs.KIND_KEY: codecs.KIND_STATE}) as w:
        for name, spec in specs.items():
            w.write(name, torch.zeros(spec.shape))
    meta = {codecs.KIND_KEY: codecs.KIND_UPDATE, codecs.CODEC_KEY: Codec.NONE.value}
    with StreamingWriter(update, specs, meta) as w:
        for name, spec in specs.items():
            w.write(name, torch.from_numpy(rng.standard_normal(spec.shape, dtype=np.float32) * np.float32(0.01)))
    return base, update


# ----------------------------------------------------------------------------------------- socket anchors


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process `pid` has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_SINKS = itertools.count()


def socket_copy(path: Path, *, durable: bool, tls: tuple[Path, Path] | None = None) -> tuple[float, float]:
    """(Seconds, CPU seconds of both ends) to send the file over loopback; the receiver optionally writes + hashes
    + fsyncs it."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    if tls is not None:
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(str(tls[0]), str(tls[1]))
        client_ctx = ssl.create_default_context(cafile=str(tls[0]))
    done = threading.Event()
    # Kept like the hub keeps every committed update: each run writes into page cache it has not used before.
    sink = path.with_name(f"{path.stem}.received-{next(_SINKS)}")

    def receive() -> None:
        conn, _ = server.accept()
        if tls is not None:
            conn = server_ctx.wrap_socket(conn, server_side=True)
        buf = bytearray(BLOCK)
        view = memoryview(buf)
        hasher = hashlib.sha256()
        with conn, open(sink if durable else os.devnull, "wb") as out:
            while n := conn.recv_into(buf):
                if durable:
                    out.write(view[:n])
                    hasher.update(view[:n])
            if durable:
                out.flush()
                os.fsync(out.fileno())
        done.set()

    receiver = threading.Thread(target=receive)
    receiver.start()
    start, cpu = time.perf_counter(), time.process_time()
    conn = socket.create_connection(("127.0.0.1", port))
    if tls is not None:
        conn = client_ctx.wrap_socket(conn, server_hostname="127.0.0.1")
    with conn, open(path, "rb") as f:
        if durable or tls is not None:
            while block := f.read(BLOCK):
                conn.sendall(block)
        else:
            conn.sendfile(f)
    done.wait()
    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    receiver.join()
    server.close()
    return elapsed, used


# --------------------------------------------------------------------------------------------- the hub


class Hub:
    """The exchange as its own process over a store in `workdir`, with TLS."""

    def __init__(self, workdir: Path, cert: Path, key: Path, payload_check: str) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.cert, self.key = cert, key
        self.payload_check = payload_check
        (workdir / "tokens.txt").write_text(f"plant-a {PLANT_TOKEN}\n")
        (workdir / "admin").write_text(ADMIN)
        self.proc: subprocess.Popen[bytes] | None = None
        self.rounds = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "plantfed.exchange",
                f"--store={self.workdir / 'store'}",
                f"--tokens={self.workdir / 'tokens.txt'}",
                f"--admin-token-file={self.workdir / 'admin'}",
                f"--listen=127.0.0.1:{self.port}",
                f"--tls-cert={self.cert}",
                f"--tls-key={self.key}",
                f"--payload-check={self.payload_check}",
            ],
            stderr=open(self.workdir / "exchange.log", "ab"),
        )
        with self.admin() as admin:
            admin.list_versions(MODEL)  # waits (with the client's retries) until the hub answers

    def admin(self) -> AdminClient:
        return AdminClient(self.target, ADMIN, root_cert=self.cert.read_bytes())

    def plant(self) -> ExchangeClient:
        return ExchangeClient(self.target, PLANT_TOKEN, root_cert=self.cert.read_bytes())

    def open_round(self, size: int) -> str:
        self.rounds += 1
        rid = f"r{self.rounds}"
        with self.admin() as admin:
            admin.open_round(
                RoundRecord(round_id=rid, model=MODEL, base_version=1, plants=["plant-a"], max_update_bytes=2 * size)
            )
        return rid

    def kill(self) -> None:
        assert self.proc
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def update_meta(rid: str, size: int, digest: str) -> UpdateMeta:
    return UpdateMeta(plant="plant-a", round_id=rid, base_version=1, num_samples=1, total_bytes=size, sha256=digest)


def timed_upload(hub: Hub, payload: Path, size: int, digest: str) -> tuple[float, float]:
    """(Seconds, CPU seconds of client and hub) of one upload."""
    rid = hub.open_round(size)
    assert hub.proc
    with hub.plant() as client:
        start, cpu, hub_cpu = time.perf_counter(), time.process_time(), cpu_seconds(hub.proc.pid)
        receipt = client.upload_update(update_meta(rid, size, digest), payload)
        elapsed = time.perf_counter() - start
        used = time.process_time() - cpu + cpu_seconds(hub.proc.pid) - hub_cpu
    assert receipt.digest == digest and not receipt.duplicate
    return elapsed, used


def cut_at_half(hub: Hub, payload: Path, size: int, digest: str) -> dict[str, int]:
    """Upload, SIGKILL the hub once the client has sent half, restart it: what the client sent again."""
    rid = hub.open_round(size)
    stalled, release = threading.Event(), threading.Event()

    def stall_at_half(done: int, total: int) -> None:
        if done >= total // 2 and not stalled.is_set():
            stalled.set()
            release.wait()

    out: dict = {}
    with hub.plant() as client:
        worker = threading.Thread(
            target=lambda: out.update(
                r=client.upload_update(update_meta(rid, size, digest), payload, progress=stall_at_half)
            )
        )
        worker.start()
        stalled.wait()
        partial = hub.workdir / "store" / "rounds" / rid / "partial" / "plant-a.data"
        while not partial.exists() or partial.stat().st_size < size // 2 - BLOCK:
            time.sleep(0.05)
        hub.kill()
        hub.start()
        release.set()
        worker.join()
    cut = out["r"]
    resumed_at = cut.attempt_offsets[-1]
    return {
        "cut_resumed_at_bytes": resumed_at,
        "cut_bytes_sent_after_restart": size - resumed_at,
        "cut_bytes_written_by_hub": cut.bytes_received,
        "cut_bytes_resent": cut.bytes_received - size,
    }


def paired_ratios(runs: list[tuple[float, float]], anchor: list[tuple[float, float]]) -> tuple[str, str]:
    """Median and range of (wall, CPU) ratios of each run to the anchor's run of the same round-robin cycle.

    Runs of one cycle are seconds apart, so they share the machine's load; the least-of-each ratios above pair runs
    from different cycles and carry the load's drift between them.
    """
    out = []
    for part in (0, 1):
        ratios = sorted(run[part] / base[part] for run, base in zip(runs, anchor, strict=True))
        out.append(f"{statistics.median(ratios):.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})")
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=1, help="runs of every contender; the fastest is kept")
    parser.add_argument("--workdir", type=Path, default=None, help="where payloads and stores go (e.g. /dev/shm)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        base, payload = write_model_and_update(work, args.size_mb << 20)
        size = payload.stat().st_size
        t = time.perf_counter()
        digest = file_sha256(payload).hexdigest()
        results: dict[str, float | int | str] = {
            "size_bytes": size,
            "client_sha256_s": round(time.perf_counter() - t, 2),
        }
        cert, key = self_signed(work)
        hubs = {check: Hub(work / f"hub-{check}", cert, key, check) for check in ("format", "update")}
        try:
            for check, hub in hubs.items():
                hub.start()
                with hub.admin() as admin:
                    t = time.perf_counter()
                    admin.publish_model(MODEL, base, promote=True)
                    results[f"publish_{check}_s"] = round(time.perf_counter() - t, 2)
            contenders: dict[str, Callable[[], tuple[float, float]]] = {
                "tcp_plain": lambda: socket_copy(payload, durable=False),
                "tcp_durable": lambda: socket_copy(payload, durable=True),
                "tls_durable": lambda: socket_copy(payload, durable=True, tls=(cert, key)),
                "exchange_format": lambda: timed_upload(hubs["format"], payload, size, digest),
                "exchange_update": lambda: timed_upload(hubs["update"], payload, size, digest),
            }
            best: dict[str, float] = {}
            cpu: dict[str, float] = {}
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
            for _ in range(args.repeat):
                for name, run in contenders.items():
                    seconds, used = run()
                    runs[name].append((seconds, used))
                    best[name] = min(best.get(name, float("inf")), seconds)
                    cpu[name] = min(cpu.get(name, float("inf")), used)
            results.update({f"{name}_s": round(seconds, 2) for name, seconds in best.items()})
            results.update({f"{name}_cpu_s": round(used, 2) for name, used in cpu.items()})
            results.update(cut_at_half(hubs["update"], payload, size, digest))
        finally:
            for hub in hubs.values():
                hub.stop()
        for name in ("exchange_format", "exchange_update"):
            results[f"{name}_vs_tcp_durable"] = round(best[name] / best["tcp_durable"], 2)
            results[f"{name}_vs_tls_durable"] = round(best[name] / best["tls_durable"], 2)
            results[f"{name}_cpu_vs_tcp_durable"] = round(cpu[name] / cpu["tcp_durable"], 2)
            results[f"{name}_cpu_vs_tls_durable"] = round(cpu[name] / cpu["tls_durable"], 2)
            paired_wall, paired_cpu = paired_ratios(runs[name], runs["tls_durable"])
            results[f"{name}_paired_vs_tls_durable"] = paired_wall
            results[f"{name}_paired_cpu_vs_tls_durable"] = paired_cpu
        for name in ("tcp_durable", "tls_durable", "exchange_format", "exchange_update"):
            results[f"{name}_MiBps"] = round(size / 2**20 / best[name], 1)
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
