"""Every command the charts render is one the `plantfed` CLI accepts.

Images are not run in these tests, so this is where a renamed flag would otherwise go unnoticed
until a pod crash-loops.
"""

from __future__ import annotations

import contextlib
import io

import pytest
from helmchart import HUB_TOGGLES, PLANT_TOGGLES, WITH_CRDS

from plantfed.cli import build_parser


def rendered_commands(helm) -> dict[str, list[str]]:
    commands: dict[str, list[str]] = {}
    renders = [helm.render_hub(*args, "-f", str(helm.plants_file), *WITH_CRDS) for args in HUB_TOGGLES.values()]
    renders += [helm.render_plant(*args) for args in PLANT_TOGGLES.values()]
    for manifests in renders:
        for _where, container in manifests.containers():
            for command in [container["command"]] + [
                container[p]["exec"]["command"]
                for p in ("readinessProbe", "livenessProbe")
                if "exec" in container.get(p, {})
            ]:
                commands.setdefault(" ".join(command), command)
    return commands


@pytest.mark.parametrize("subcommand", ["exchange", "operator", "agent", "healthcheck"])
def test_rendered_commands_parse(helm, subcommand):
    commands = [c for c in rendered_commands(helm).values() if c[1] == subcommand]
    assert commands, f"no chart renders `plantfed {subcommand}`"
    for command in commands:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                args = build_parser().parse_args(command[1:])
            except SystemExit:
                args = None
        if args is not None:
            if subcommand == "agent":
                # Also the values: node selector and tolerations as the agent parses them.
                from plantfed.plant.agent.config import from_args

                from_args(args)
            continue
        pytest.fail(f"`{' '.join(command)}` is rejected by the CLI:\n{err.getvalue()}")
