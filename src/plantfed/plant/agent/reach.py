"""`plantfed reach-hub`: does this plant reach its hub with the credentials its agent has? (`helm test`).

The agent talks to the hub two ways, and either can be misconfigured without the other: the model exchange
(address, CA, token, client certificate) and the hub's API server (kubeconfig of the plant's ServiceAccount,
namespace). This asks the exchange whom it takes the token (and certificate) for, which must be this plant,
not merely some valid identity (a plant installed with another plant's Secret would train as that plant),
and reads this plant's PlantParticipant through the kubeconfig. Each check's result is printed; the exit
status is 0 only when all pass.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from plantfed.plant.agent.config import add_hub_arguments

    add_hub_arguments(p)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each of the hub's services")


def check_exchange(args: argparse.Namespace) -> tuple[bool, str]:
    from plantfed.exchange.client import ExchangeClient, RetryPolicy
    from plantfed.exchange.errors import ExchangeError
    from plantfed.exchange.transport import ClientTLS

    try:
        tls = ClientTLS.from_files(args.ca_file, args.client_cert, args.client_key)
        token = args.token_file.read_text().strip()
    except (OSError, ValueError) as exc:
        return False, f"exchange: {exc}"
    retry = RetryPolicy(max_attempts=3, max_backoff=2.0, connect_timeout=args.timeout)
    try:
        with ExchangeClient(args.exchange, token, **tls.channel_kwargs(), retry=retry) as exchange:
            caller = exchange.who_am_i()
    except ExchangeError as exc:
        return False, f"exchange at {args.exchange} refused this plant's credentials: {exc}"
    if caller.plant != args.plant:
        who = "the admin" if caller.admin else f"plant {caller.plant!r}"
        return False, f"exchange at {args.exchange} takes this token for {who}, not for plant {args.plant!r}"
    return True, f"exchange at {args.exchange} takes this token for plant {args.plant!r}"


def check_api(args: argparse.Namespace) -> tuple[bool, str]:
    from kubernetes import config
    from kubernetes.client.exceptions import ApiException

    from plantfed.plant.agent.hub import Hub

    where = f"hub API server (namespace {args.hub_namespace})"
    try:
        api = config.new_client_from_config(config_file=str(args.hub_kubeconfig))
    except (OSError, config.ConfigException) as exc:
        return False, f"{where}: {args.hub_kubeconfig}: {exc}"
    try:
        with api:
            Hub(api, args.hub_namespace, args.plant).participant(timeout=args.timeout)
    except ApiException as exc:
        return False, f"{where}: cannot read PlantParticipant {args.plant!r}: {exc.status} {exc.reason}"
    except OSError as exc:
        return False, f"{where}: {exc}"
    return True, f"{where} shows PlantParticipant {args.plant!r} to this plant"


def run(args: argparse.Namespace) -> int:
    results = [check_exchange(args), check_api(args)]
    for ok, message in results:
        print(("ok    " if ok else "FAIL  ") + message)
    return 0 if all(ok for ok, _ in results) else 1
