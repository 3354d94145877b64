"""`plantfed init-model`: write the first version of a model lineage into the store (the init Job).

Idempotent: a lineage that already has versions is left alone (a retried Job, or a FederatedModel
recreated over an existing lineage, never resets training). The first version is promoted so the
first round has a base to start from.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from plantfed.engine.store import ModelStore


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", type=Path, required=True, help="model store directory")
    p.add_argument("--model", required=True, help="lineage name (the FederatedModel's name)")
    p.add_argument("--task", default="bearing", help="built-in task name or 'module:Class'")
    p.add_argument("--variant", default="full")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--seed", type=int, help="random initialisation seed (default 0)")
    source.add_argument("--from-model", help="start from a published version of this lineage instead")
    p.add_argument("--from-version", type=int, help="with --from-model: the version to copy (default: promoted)")


def run(args: argparse.Namespace) -> int:
    from plantfed.engine.store import ModelStore, NotFoundError

    if args.from_version is not None and args.from_model is None:
        raise SystemExit("--from-version needs --from-model")
    store = ModelStore(args.store)
    existing = store.versions(args.model)
    if existing:
        promoted = store.promoted(args.model)
        print(
            json.dumps(
                {
                    "model": args.model,
                    "created": False,
                    "versions": len(existing),
                    "promoted": promoted.version if promoted else None,
                }
            )
        )
        return 0
    if args.from_model:
        try:
            source = store.get_model(args.from_model, args.from_version)
        except NotFoundError as exc:
            raise SystemExit(f"cannot start {args.model} from {args.from_model}: {exc}") from exc
        digest, origin = source.digest, {"from_model": source.model, "from_version": source.version}
    else:
        digest, origin = _seeded_blob(store, args.task, args.variant, args.seed or 0), {"seed": args.seed or 0}
    version = store.publish_model(args.model, digest, parent=None, round_id=None, metrics={}, promote=True)
    print(json.dumps({"model": args.model, "created": True, "version": version.version, "digest": digest, **origin}))
    return 0


def _seeded_blob(store: ModelStore, task_ref: str, variant: str, seed: int) -> str:
    import torch

    from plantfed.formats import codecs
    from plantfed.tasks.sdk import load_task

    torch.manual_seed(seed)
    model = load_task(task_ref).build_model(variant)
    with store.scratch_dir(prefix="init-") as tmp:
        path = tmp / "initial.safetensors"
        codecs.save_state({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
        digest, _size = store.import_file(path)
    return digest
