"""Manual benchmark (not run in CI): one large update over loopback.

1. Upload through the exchange (server as its own process via `python -m plantfed.exchange`, TLS on) vs a raw
   TCP socket copy of the same bytes; the TCP receiver does the same durable work as the hub (write to a file,
   sha256, fsync), so the ratio is the protocol's overhead. A plain socket copy without disk work is also shown.
2. The same upload with the hub SIGKILLed at 50 % and restarted: how many bytes the client sent again.

Usage: python bench/bench_upload.py [--size-mb 1024] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import ipaddress
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from safetensors.numpy import save_file

from plantfed.contract.records import RoundRecord, UpdateMeta
from plantfed.engine.store import file_sha256
from plantfed.exchange import AdminClient, ExchangeClient

ADMIN = "bench-admin-token"
PLANT_TOKEN = "bench-plant-token"


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


def wait_for_port(port: int, proc: subprocess.Popen) -> None:
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"exchange exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)


class Hub:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.cert, self.key = self_signed(workdir)
        (workdir / "tokens.txt").write_text(f"plant-a {PLANT_TOKEN}\n")
        (workdir / "admin").write_text(ADMIN)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "plantfed.exchange",
                "--store",
                str(self.workdir / "store"),
                "--tokens",
                str(self.workdir / "tokens.txt"),
                "--admin-token-file",
                str(self.workdir / "admin"),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--tls-cert",
                str(self.cert),
                "--tls-key",
                str(self.key),
            ],
            stderr=open(self.workdir / "exchange.log", "ab"),
        )
        wait_for_port(self.port, self.proc)

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


def make_payload(path: Path, size: int) -> None:
    rng = np.random.default_rng(0)
    save_file({"delta": rng.integers(0, 255, size=size - 128, dtype=np.uint8)}, str(path))


def tcp_copy(path: Path, *, durable: bool) -> float:
    """Seconds to send the file over a loopback socket; the receiver optionally writes+hashes+fsyncs."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    done = threading.Event()

    def receive() -> None:
        conn, _ = server.accept()
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        hasher = hashlib.sha256()
        with conn, open(path.with_suffix(".tcp"), "wb") if durable else open(os.devnull, "wb") as out:
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
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as conn, open(path, "rb") as f:
        if durable:
            _send_chunks(conn, f)
        else:
            conn.sendfile(f)
    done.wait()
    elapsed = time.perf_counter() - start
    receiver.join()
    server.close()
    path.with_suffix(".tcp").unlink(missing_ok=True)
    return elapsed


def _send_chunks(conn: socket.socket, f) -> None:
    while block := f.read(1 << 20):
        conn.sendall(block)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    size = args.size_mb << 20
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        payload = work / "update.safetensors"
        make_payload(payload, size)
        size = payload.stat().st_size
        t = time.perf_counter()
        digest = file_sha256(payload).hexdigest()
        hash_s = time.perf_counter() - t
        results: dict[str, float | int | str] = {"size_bytes": size, "client_sha256_s": round(hash_s, 2)}

        results["tcp_plain_s"] = round(tcp_copy(payload, durable=False), 2)
        results["tcp_durable_s"] = round(tcp_copy(payload, durable=True), 2)

        hub = Hub(work)
        hub.start()
        root = hub.cert.read_bytes()
        try:
            seed = work / "seed.safetensors"
            save_file({"w": np.zeros(16, np.float32)}, str(seed))
            with AdminClient(hub.target, ADMIN, root_cert=root) as admin:
                admin.publish_model("bench", seed, promote=True)
                for rid in ("r-full", "r-cut"):
                    admin.open_round(
                        RoundRecord(
                            round_id=rid, model="bench", base_version=1, plants=["plant-a"], max_update_bytes=size * 2
                        )
                    )

            def meta(rid: str) -> UpdateMeta:
                return UpdateMeta(
                    plant="plant-a", round_id=rid, base_version=1, num_samples=1, total_bytes=size, sha256=digest
                )

            with ExchangeClient(hub.target, PLANT_TOKEN, root_cert=root) as client:
                t = time.perf_counter()
                receipt = client.upload_update(meta("r-full"), payload)
                results["exchange_tls_s"] = round(time.perf_counter() - t, 2)
                assert receipt.digest == digest

            stalled = threading.Event()
            release = threading.Event()

            def stall_at_half(done: int, total: int) -> None:
                if done >= total // 2 and not stalled.is_set():
                    stalled.set()
                    release.wait()

            out: dict = {}
            with ExchangeClient(hub.target, PLANT_TOKEN, root_cert=root) as client:
                worker = threading.Thread(
                    target=lambda: out.update(r=client.upload_update(meta("r-cut"), payload, progress=stall_at_half))
                )
                worker.start()
                stalled.wait()
                partial = work / "store" / "rounds" / "r-cut" / "partial" / "plant-a.data"
                while not partial.exists() or partial.stat().st_size < size // 2 - (1 << 20):
                    time.sleep(0.05)
                hub.kill()
                hub.start()
                release.set()
                worker.join()
            cut = out["r"]
            resumed_at = cut.attempt_offsets[-1]
            results.update(
                cut_resumed_at_bytes=resumed_at,
                cut_bytes_sent_after_restart=size - resumed_at,
                cut_bytes_written_by_hub=cut.bytes_received,
                cut_bytes_resent=cut.bytes_received - size,
            )
        finally:
            hub.stop()
        results["exchange_vs_tcp_durable"] = round(
            float(results["exchange_tls_s"]) / float(results["tcp_durable_s"]), 2
        )
        results["exchange_MBps"] = round(size / 2**20 / float(results["exchange_tls_s"]), 1)
        results["tcp_durable_MBps"] = round(size / 2**20 / float(results["tcp_durable_s"]), 1)
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
