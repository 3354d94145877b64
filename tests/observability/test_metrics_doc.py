"""docs/observability.md lists every metric src/plantfed/contract/metrics.py defines, as Prometheus names it.

The table between the `metrics:begin`/`metrics:end` markers is generated from the registry; after
changing metrics.py, rewrite it with

    .venv/bin/python tests/observability/test_metrics_doc.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from plantfed.contract.metrics import Metrics

DOC = Path(__file__).resolve().parents[2] / "docs" / "observability.md"
BEGIN, END = "<!-- metrics:begin (generated: tests/observability/test_metrics_doc.py) -->", "<!-- metrics:end -->"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def families() -> list[tuple[str, str, tuple[str, ...], str]]:
    """(name, type, labels, help) of every family, in definition order."""
    out = []
    for metric in vars(Metrics()).values():
        if hasattr(metric, "_labelnames"):
            out.append((metric._name, metric._type, tuple(metric._labelnames), metric._documentation))
    return out


def table() -> str:
    rows = ["| series | type | labels | meaning |", "| --- | --- | --- | --- |"]
    for name, kind, labels, doc in families():
        series = ", ".join(f"`{name}{s}`" for s in SUFFIXES[kind])
        rows.append(f"| {series} | {kind} | {', '.join(f'`{label}`' for label in labels)} | {doc} |")
    return "\n".join(rows)


def generated_block(text: str) -> str:
    assert BEGIN in text and END in text, f"{DOC} lost its generated-table markers"
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def test_every_metric_is_documented() -> None:
    text = DOC.read_text()
    assert generated_block(text) == table(), (
        f"the metric table is stale: run .venv/bin/python {Path(__file__).relative_to(DOC.parents[1])}"
    )
    for name, _, _, _ in families():
        assert name in text


def test_doc_names_no_metric_that_does_not_exist() -> None:
    known = {name + s for name, kind, _, _ in families() for s in SUFFIXES[kind]} | {n for n, *_ in families()}
    named = set(re.findall(r"\bplantfed_[a-z0-9_]+", DOC.read_text()))
    assert named <= known, f"docs/observability.md names metrics metrics.py does not define: {sorted(named - known)}"


if __name__ == "__main__":
    text = DOC.read_text()
    before, rest = text.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    DOC.write_text(f"{before}{BEGIN}\n{table()}\n{END}{after}")
    print(DOC)
    sys.exit(0)
