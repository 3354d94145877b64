"""Token books (file and Secret-mount directory), rotation without restart, and TLS / mTLS."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import grpc
import pytest
from support.exchange import ADMIN_TOKEN, Hub, meta_for, write_payload, write_token_book
from support.tls import Pki

from plantfed.contract.records import RoundRecord
from plantfed.contract.wire.v1 import exchange_pb2 as pb
from plantfed.contract.wire.v1 import exchange_pb2_grpc as pb_grpc
from plantfed.engine.store import ModelStore
from plantfed.exchange import (
    AdminClient,
    ExchangeClient,
    ExchangeError,
    PayloadCheck,
    TokenBook,
    TokenBookError,
    build_server,
)
from plantfed.exchange.auth import Authenticator
from plantfed.exchange.transport import ServerTLS, open_channel


def _secret_mount(root: Path, generation: str, tokens: dict[str, str]) -> None:
    """Lay out (or atomically update) a directory the way the kubelet mounts a Secret."""
    gen_dir = root / f"..{generation}"
    gen_dir.mkdir(parents=True)
    for plant, token in tokens.items():
        (gen_dir / plant).write_text(token)
    tmp_link = root / "..data_tmp"
    tmp_link.symlink_to(gen_dir.name)
    os.replace(tmp_link, root / "..data")
    for plant in tokens:
        link = root / plant
        if not link.is_symlink():
            link.symlink_to(f"..data/{plant}")


def test_secret_mount_directory_rotates_without_restart(tmp_path: Path) -> None:
    mount = tmp_path / "plant-tokens"
    _secret_mount(mount, "gen1", {"plant-a": "old-a", "plant-b": "sha256:" + hashlib.sha256(b"tok-b").hexdigest()})
    book = TokenBook(mount, reload_seconds=0)
    assert book.identify("old-a") == "plant-a" and book.identify("tok-b") == "plant-b"
    assert book.identify("sha256:" + hashlib.sha256(b"tok-b").hexdigest()) is None

    _secret_mount(mount, "gen2", {"plant-a": "new-a", "plant-b": "tok-b"})
    assert book.identify("old-a") is None
    assert book.identify("new-a") == "plant-a" and book.identify("tok-b") == "plant-b"


def test_a_broken_book_on_reload_keeps_the_previous_one(tmp_path: Path) -> None:
    path = write_token_book(tmp_path / "tokens.txt", {"plant-a": "tok-a"})
    book = TokenBook(path, reload_seconds=0)
    path.write_text("plant-a tok-a\nplant-b\n")
    assert book.identify("tok-a") == "plant-a"
    path.write_text("plant-a tok-a\nplant-b tok-b\n")
    assert book.identify("tok-b") == "plant-b"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("plant-a same\nplant-b same\n", "share a token"),
        ("plant-a tok\nplant-a tok2\n", "listed twice"),
        ("../etc tok\n", "invalid plant name"),
        ("plant-a sha256:abc\n", "64 lowercase hex"),
        ("plant-a\n", "expected '<plant> <token"),
    ],
)
def test_bad_token_books_are_refused_with_the_reason(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text(text)
    with pytest.raises(TokenBookError, match="tokens.txt") as info:
        TokenBook(path)
    assert words in str(info.value)


def test_a_plant_may_not_hold_the_admin_token(tmp_path: Path) -> None:
    book = TokenBook(write_token_book(tmp_path / "t.txt", {"plant-a": ADMIN_TOKEN}))
    with pytest.raises(TokenBookError, match="admin token"):
        Authenticator(book, ADMIN_TOKEN)


def test_rotated_plant_token_takes_effect_on_a_running_hub(hub: Hub, tmp_path: Path) -> None:
    hub.seed()
    old = hub.tokens["plant-a"]
    hub.client_with_token(old).download_model("bearing-cnn", None, tmp_path / "m.bin")
    write_token_book(hub.tmp / "tokens.txt", {**hub.tokens, "plant-a": "rotated-token-a"})
    with pytest.raises(ExchangeError) as info:
        hub.client_with_token(old).download_model("bearing-cnn", None, tmp_path / "m.bin")
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
    hub.client_with_token("rotated-token-a").download_model("bearing-cnn", None, tmp_path / "m.bin")


# --- TLS -------------------------------------------------------------------------------------------------


def _tls_hub(tmp_path: Path, tls: ServerTLS) -> tuple[grpc.Server, str, ModelStore]:
    store = ModelStore(tmp_path / "store")
    book = TokenBook.from_tokens({"plant-a": "tok-a"})
    server, port = build_server(
        store, book, admin_token=ADMIN_TOKEN, address="127.0.0.1:0", tls=tls, payload_check=PayloadCheck.FORMAT
    )
    server.start()
    return server, f"127.0.0.1:{port}", store


def test_tls_round_trip(tmp_path: Path, pki: Pki) -> None:
    server, target, store = _tls_hub(tmp_path, pki.server)
    try:
        seed = write_payload(tmp_path / "seed.safetensors", 200_000)
        with AdminClient(target, ADMIN_TOKEN, root_cert=pki.ca_cert) as admin:
            admin.publish_model("m", seed, promote=True)
            admin.open_round(RoundRecord(round_id="r1", model="m", base_version=1, plants=["plant-a"]))
        update = write_payload(tmp_path / "u.safetensors", 300_000, seed=1)
        with ExchangeClient(target, "tok-a", root_cert=pki.ca_cert) as plant:
            plant.download_model("m", None, tmp_path / "got.bin")
            receipt = plant.upload_update(meta_for("plant-a", "r1", update), update)
        assert (tmp_path / "got.bin").read_bytes() == seed.read_bytes()
        assert [u.digest for u in store.updates("r1")] == [receipt.digest]
    finally:
        server.stop(None).wait()


def _plaintext_get_round(target: str) -> grpc.StatusCode:
    with open_channel(target) as channel:
        stub = pb_grpc.ModelExchangeStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.GetRound(pb.GetRoundRequest(round_id="r1"), metadata=(("authorization", "Bearer tok-a"),), timeout=30)
        return info.value.code()


def test_plaintext_client_is_refused_by_a_tls_server(tmp_path: Path, pki: Pki) -> None:
    server, target, _ = _tls_hub(tmp_path, pki.server)
    try:
        assert _plaintext_get_round(target) == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(None).wait()


def test_mutual_tls_needs_a_client_certificate(tmp_path: Path, pki: Pki) -> None:
    mtls = ServerTLS(cert_chain=pki.server.cert_chain, private_key=pki.server.private_key, client_ca=pki.ca_cert)
    server, target, store = _tls_hub(tmp_path, mtls)
    try:
        seed = write_payload(tmp_path / "seed.safetensors", 10_000)
        with AdminClient(
            target, ADMIN_TOKEN, root_cert=pki.ca_cert, client_cert=pki.client_cert, client_key=pki.client_key
        ) as admin:
            assert admin.publish_model("m", seed).version == 1
        with grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=pki.ca_cert)) as channel:
            stub = pb_grpc.ModelExchangeStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.GetModel(
                    pb.GetModelRequest(model="m", version=1),
                    metadata=(("authorization", f"Bearer {ADMIN_TOKEN}"),),
                    timeout=30,
                )
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert [v.version for v in store.versions("m")] == [1]
    finally:
        server.stop(None).wait()
