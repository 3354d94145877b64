"""Bearer-token authentication: which plant (or the admin) is calling.

The hub keeps only sha256 hashes of tokens in memory and compares them in constant time, over every entry,
so neither a match nor its position leaks through timing.

Token book format (``--tokens PATH``), either:

* a directory with one file per plant: the file name is the plant name, the content its credential. This is
  what a Kubernetes Secret mounted as a volume looks like (one key per plant); entries starting with ``.``
  (the Secret mount's ``..data`` bookkeeping) are ignored.
* a file with one ``<plant> <credential>`` pair per line; blank lines and lines starting with ``#`` are
  ignored.

A credential is either the token itself or ``sha256:<64 hex>``, the hash of the token, so the hub's Secret
need not hold plaintext tokens. The admin token file (``--admin-token-file``) holds one credential in the
same form. The book is re-read when its files change (checked at most every `reload_seconds`), so tokens
rotate without a restart; a book that fails to load keeps the previous one in force and logs why.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from plantfed.contract.naming import check_name

log = logging.getLogger(__name__)

_HASHED = re.compile(r"^sha256:([0-9a-f]{64})$")


class TokenBookError(ValueError):
    """A token book or admin token file that cannot be used, with the reason."""


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_credential(text: str, where: str) -> bytes:
    """A credential as stored: `sha256:<hex>` or a plaintext token; returns the token's sha256."""
    text = text.strip()
    if not text:
        raise TokenBookError(f"{where}: empty credential")
    match = _HASHED.match(text)
    if match:
        return bytes.fromhex(match.group(1))
    if text.startswith("sha256:"):
        raise TokenBookError(f"{where}: 'sha256:' must be followed by 64 lowercase hex characters")
    if any(c.isspace() for c in text):
        raise TokenBookError(f"{where}: a token may not contain whitespace")
    return token_hash(text)


def parse_book_dir(path: Path) -> dict[str, bytes]:
    book = {}
    for entry in sorted(path.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        try:
            plant = check_name("plant", entry.name)
        except ValueError as exc:
            raise TokenBookError(f"{entry}: {exc}") from exc
        book[plant] = parse_credential(entry.read_text(), str(entry))
    return book


def parse_book_text(text: str, where: str) -> dict[str, bytes]:
    book: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise TokenBookError(f"{where}:{number}: expected '<plant> <token or sha256:hex>'")
        plant, credential = parts
        try:
            check_name("plant", plant)
        except ValueError as exc:
            raise TokenBookError(f"{where}:{number}: {exc}") from exc
        if plant in book:
            raise TokenBookError(f"{where}:{number}: plant {plant!r} listed twice")
        book[plant] = parse_credential(credential, f"{where}:{number}")
    return book


def _signature(path: Path) -> tuple:
    """Changes whenever a file of the book changes, including a Secret mount's symlink swap."""
    if path.is_dir():
        return tuple(
            (e.name, s.st_mtime_ns, s.st_size, s.st_ino)
            for e in sorted(path.iterdir())
            if not e.name.startswith(".") and e.is_file()
            for s in [e.stat()]
        )
    s = path.stat()
    return ((path.name, s.st_mtime_ns, s.st_size, s.st_ino),)


class TokenBook:
    """Maps a presented plant token to the plant's name; reloads its source when it changes.

    `reserved` holds hashes no plant may use (the admin token's), checked on every (re)load.
    """

    def __init__(self, path: Path, *, reload_seconds: float = 2.0, reserved: frozenset[bytes] = frozenset()) -> None:
        self._path: Path | None = Path(path)
        self._reload_seconds = reload_seconds
        self._reserved = reserved
        self._lock = threading.Lock()
        self._checked_at = time.monotonic()
        self._signature: tuple = ()
        self._entries = self._load()

    @classmethod
    def from_tokens(cls, plants: dict[str, str]) -> TokenBook:
        """A fixed book (no file) from plaintext tokens, for a process that generated them itself."""
        book = cls.__new__(cls)
        book._path = None
        book._reload_seconds = float("inf")
        book._reserved = frozenset()
        book._lock = threading.Lock()
        book._checked_at = 0.0
        book._signature = ()
        book._entries = _validated({p: token_hash(t) for p, t in plants.items()}, frozenset())
        return book

    def reserve(self, reserved: frozenset[bytes]) -> None:
        """Refuse, now and on every reload, any plant whose token hash is in `reserved`."""
        self._reserved = self._reserved | reserved
        self._entries = _validated(dict(self._entries), self._reserved)

    def _load(self) -> tuple[tuple[str, bytes], ...]:
        assert self._path is not None
        try:
            self._signature = _signature(self._path)
            if self._path.is_dir():
                plants = parse_book_dir(self._path)
            else:
                plants = parse_book_text(self._path.read_text(), str(self._path))
        except OSError as exc:
            raise TokenBookError(f"cannot read token book {self._path}: {exc}") from exc
        try:
            return _validated(plants, self._reserved)
        except TokenBookError as exc:
            raise TokenBookError(f"{self._path}: {exc}") from exc

    def _maybe_reload(self) -> None:
        if self._path is None:
            return
        now = time.monotonic()
        with self._lock:
            if now - self._checked_at < self._reload_seconds:
                return
            self._checked_at = now
            try:
                if _signature(self._path) == self._signature:
                    return
                self._entries = self._load()
                log.info("token book %s reloaded: %d plants", self._path, len(self._entries))
            except (OSError, TokenBookError) as exc:
                log.error("token book not reloaded, keeping the previous one: %s", exc)

    def identify(self, token: str) -> str | None:
        """The plant whose token this is, or None. Compares against every entry in constant time."""
        self._maybe_reload()
        presented = token_hash(token)
        found = None
        for plant, stored in self._entries:
            if hmac.compare_digest(presented, stored):
                found = plant
        return found

    @property
    def plants(self) -> list[str]:
        self._maybe_reload()
        return [plant for plant, _ in self._entries]


def _validated(plants: dict[str, bytes], reserved: frozenset[bytes]) -> tuple[tuple[str, bytes], ...]:
    owners: dict[bytes, str] = {}
    for plant, digest in plants.items():
        if digest in owners:
            raise TokenBookError(f"plants {owners[digest]!r} and {plant!r} share a token")
        if digest in reserved:
            raise TokenBookError(f"plant {plant!r} has the admin token")
        owners[digest] = plant
    return tuple(sorted(plants.items()))


@dataclass(frozen=True)
class Caller:
    """Who is calling: a plant (by name) or the hub's admin."""

    plant: str | None = None
    admin: bool = False

    @property
    def plant_name(self) -> str:
        """The calling plant, for RPCs that only a plant token may call (the server refused anyone else)."""
        if self.plant is None:
            raise PermissionError("this call needs a plant token")
        return self.plant


class Authenticator:
    """Turns call metadata into a Caller, or None when the token is missing or unknown."""

    def __init__(self, book: TokenBook, admin_credential: str) -> None:
        self._admin = parse_credential(admin_credential, "admin token")
        book.reserve(frozenset({self._admin}))
        self._book = book

    def caller(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller | None:
        token = bearer_token(metadata)
        if token is None:
            return None
        if hmac.compare_digest(token_hash(token), self._admin):
            return Caller(admin=True)
        plant = self._book.identify(token)
        return Caller(plant=plant) if plant else None


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token from `authorization: Bearer <token>` call metadata, if present and well-formed."""
    for key, value in metadata or ():
        if key.lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


#: SAN URI naming a plant in its client certificate; takes precedence over the subject CN.
PLANT_URI_PREFIX = "spiffe://plantfed/plant/"

#: The name (subject CN) of the admin's client certificate under mutual TLS. The colon keeps it out of the
#: plant namespace (plant names are DNS labels), so no plant certificate can pass for the admin's.
ADMIN_CERT_NAME = "plantfed:admin"


def certificate_name(auth_context: Mapping[str, Sequence[bytes]]) -> str | None:
    """The identity a verified client certificate names: a SAN URI `spiffe://plantfed/plant/<name>`, else the CN.

    `auth_context` is gRPC's (`context.auth_context()`): it carries the peer certificate only after the TLS
    handshake verified it against the server's client CA. Returns None without a certificate or a name.
    """
    pems = auth_context.get("x509_pem_cert") or []
    if not pems:
        return None
    cert = x509.load_pem_x509_certificate(pems[0])
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = [u for u in sans.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith(PLANT_URI_PREFIX)]
    except x509.ExtensionNotFound:
        uris = []
    if len(uris) > 1:
        return None  # ambiguous: a certificate names exactly one plant or none
    if uris:
        return uris[0][len(PLANT_URI_PREFIX) :] or None
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if len(cns) == 1 else None


def generate_token() -> str:
    """A fresh random token (256 bits, URL-safe), for provisioning a plant."""
    return secrets.token_urlsafe(32)


__all__ = [
    "ADMIN_CERT_NAME",
    "Authenticator",
    "Caller",
    "TokenBook",
    "TokenBookError",
    "bearer_token",
    "certificate_name",
    "generate_token",
    "parse_credential",
    "token_hash",
]
