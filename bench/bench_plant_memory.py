"""Plant memory benchmark: peak RSS of one round on a plant, as a multiple of the model's size.

One `PlantRuntime.participate` per optimiser, each in its own process (so `ru_maxrss` is that round's peak):
download the base model from a real exchange (its own process, TLS), build and train the model (a stack of
float32 linear layers adding up to `--size-mb`, a few batches of random data, so training memory is the
model's, not the data's), take the delta, encode and upload it. "Above imports" is the peak minus the RSS right
after importing torch and plantfed; divided by the model's size it is what one round costs in models' worth.
The floor is what training itself needs: weights and gradients (2) plus the optimiser's state (SGD with
momentum: 1, Adam: 2).

Usage: python bench/bench_plant_memory.py [--size-mb 200] [--optimizers sgd,adam]
A run that checks the bench works takes seconds: --size-mb 8.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from bench_upload import MODEL, PLANT_TOKEN, Hub, self_signed
from torch import nn
from torch.utils.data import TensorDataset

from plantfed.tasks.sdk import BatchResult, DataSpec, PlantData, Task

WIDTH = 1024
SAMPLES = 32


class WideTask(Task):
    """A classifier whose size is all in its linear layers; `size_mb` of float32 weights."""

    name = "wide"

    def __init__(self, size_mb: int = 200) -> None:
        self.layers = max(1, (size_mb << 20) // (4 * (WIDTH * WIDTH + WIDTH)))

    def build_model(self, variant: str = "full") -> nn.Module:
        blocks: list[nn.Module] = []
        for _ in range(self.layers):
            blocks += [nn.Linear(WIDTH, WIDTH), nn.ReLU()]
        return nn.Sequential(*blocks, nn.Linear(WIDTH, 4))

    def load_data(self, spec: DataSpec) -> PlantData:
        g = torch.Generator().manual_seed(spec.plant_index)
        x, y = torch.randn(SAMPLES, WIDTH, generator=g), torch.randint(0, 4, (SAMPLES,), generator=g)
        data = TensorDataset(x, y)
        return PlantData(train=data, val=data, test=data)

    def batch_loss(self, model: nn.Module, batch, device: torch.device) -> BatchResult:
        x, y = (t.to(device) for t in batch)
        logits = model(x)
        hits = float((logits.argmax(1) == y).sum())
        return BatchResult(loss=nn.functional.cross_entropy(logits, y), count=int(y.numel()), stats={"accuracy": hits})


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def worker(args: argparse.Namespace) -> None:
    """One round in this process; prints its memory figures as JSON."""
    from plantfed.exchange import ExchangeClient
    from plantfed.plant.runtime import ParticipationConfig, PlantRuntime
    from plantfed.plant.training import LocalTrainingConfig

    task = WideTask(args.size_mb)
    after_imports = rss_bytes()
    client = ExchangeClient(args.target, PLANT_TOKEN, root_cert=Path(args.ca).read_bytes())
    runtime = PlantRuntime("plant-a", task, DataSpec(plant="plant-a"), Path(args.state), client)
    training = LocalTrainingConfig(epochs=1, batch_size=8, learning_rate=1e-3, optimizer=args.optimizer)
    report = runtime.participate(args.round, ParticipationConfig(training=training, device="cpu"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"after_imports": after_imports, "peak": peak, "payload_bytes": report.payload_bytes}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--optimizers", default="sgd,adam")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--target", "--ca", "--state", "--round", "--optimizer"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    from plantfed.contract.records import RoundRecord
    from plantfed.formats import codecs

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cert, key = self_signed(work)
        hub = Hub(work / "hub", cert, key, "format")
        hub.start()
        results: dict[str, object] = {}
        try:
            task = WideTask(args.size_mb)
            torch.manual_seed(0)
            initial = work / "initial.safetensors"
            codecs.save_state(task.build_model().state_dict(), initial)
            model_bytes = sum(t.numel() * t.element_size() for t in codecs.load_state(initial).values())
            results["model_bytes"] = model_bytes
            with hub.admin() as admin:
                admin.publish_model(MODEL, initial, promote=True)
            for optimizer in args.optimizers.split(","):
                rid = f"r-{optimizer}"
                with hub.admin() as admin:
                    admin.open_round(
                        RoundRecord(
                            round_id=rid,
                            model=MODEL,
                            base_version=1,
                            plants=["plant-a"],
                            max_update_bytes=2 * model_bytes,
                        )
                    )
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--worker",
                        f"--size-mb={args.size_mb}",
                        f"--target={hub.target}",
                        f"--ca={cert}",
                        f"--state={work / ('plant-' + optimizer)}",
                        f"--round={rid}",
                        f"--optimizer={optimizer}",
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                figures = json.loads(out.strip().splitlines()[-1])
                above = figures["peak"] - figures["after_imports"]
                results[optimizer] = {
                    "peak_rss_mib": round(figures["peak"] / 2**20, 1),
                    "rss_after_imports_mib": round(figures["after_imports"] / 2**20, 1),
                    "above_imports_mib": round(above / 2**20, 1),
                    "above_imports_per_model": round(above / model_bytes, 2),
                }
        finally:
            hub.stop()
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
