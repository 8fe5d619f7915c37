"""Keys of the robot link: ZeroMQ CURVE on every socket and a ZAP allow-list of controller public keys.

Everything on a robot computer may run as root, so file permissions on an ipc folder stop nobody; the
boundary is a key. Layout of a keys folder (pyzmq certificate files, made by `robo-hybrid keys` or on
first start):

    server.key, server.key_secret          the robot side's key pair (the controller pins server.key)
    controller.key, controller.key_secret  the controller's key pair
    authorized/*.key                       public keys the robot side accepts (the ZAP allow-list)

Secret keys are read from these files only; nothing of them travels over the link.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

SERVER, CONTROLLER, AUTHORIZED = "server", "controller", "authorized"


@dataclass(frozen=True)
class LinkKeys:
    """Paths of one keys folder."""

    root: str

    @property
    def server_secret(self) -> str:
        """The robot side's secret certificate."""
        return os.path.join(self.root, f"{SERVER}.key_secret")

    @property
    def server_public(self) -> str:
        """The robot side's public certificate (pinned by the controller)."""
        return os.path.join(self.root, f"{SERVER}.key")

    @property
    def controller_secret(self) -> str:
        """The controller's secret certificate."""
        return os.path.join(self.root, f"{CONTROLLER}.key_secret")

    @property
    def authorized(self) -> str:
        """Folder of accepted client public keys."""
        return os.path.join(self.root, AUTHORIZED)


def ensure_keys(keys_dir: str, force: bool = False) -> LinkKeys:
    """Create the key pairs and the allow-list in `keys_dir` unless present (or always with `force`)."""
    keys = LinkKeys(os.path.abspath(os.path.expanduser(keys_dir)))
    os.makedirs(keys.authorized, mode=0o700, exist_ok=True)
    for name in (SERVER, CONTROLLER):
        if force or not os.path.isfile(os.path.join(keys.root, f"{name}.key_secret")):
            zmq.auth.create_certificates(keys.root, name)
    allowed = os.path.join(keys.authorized, f"{CONTROLLER}.key")
    if force or not os.path.isfile(allowed):
        shutil.copyfile(os.path.join(keys.root, f"{CONTROLLER}.key"), allowed)
    return keys


def load_pair(path: str) -> tuple[bytes, bytes]:
    """(public, secret) z85 keys of a secret certificate file; ValueError with the fix when unusable."""
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read key file {path}: {e}. Fix: run `robo-hybrid keys dir=...`") from e
    if secret is None:
        raise ValueError(f"{path} holds no secret key. Fix: point at a .key_secret file (robo-hybrid keys)")
    return public, secret


def load_public(path: str) -> bytes:
    """The z85 public key of a certificate file."""
    try:
        return zmq.auth.load_certificate(path)[0]
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read key file {path}: {e}. Fix: run `robo-hybrid keys dir=...`") from e


class _AllowList:
    """ZAP credentials callback: accept listed public keys, count every refusal."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.refused = 0
        self._lock = threading.Lock()
        self.keys = self._load()

    def _load(self) -> set[bytes]:
        return set(zmq.auth.load_certificates(self.folder)) if os.path.isdir(self.folder) else set()

    def callback(self, domain: str, key: bytes) -> bool:
        """Called by the authenticator thread for every CURVE handshake."""
        ok = key in self.keys
        if not ok:
            with self._lock:
                self.refused += 1
        return ok


class ServerAuth:
    """A ZAP handler thread on `ctx` with the allow-list of `keys.authorized`; `secure(sock)` makes a CURVE server."""

    def __init__(self, ctx: zmq.Context, keys: LinkKeys) -> None:
        self.public, self.secret = load_pair(keys.server_secret)
        self.allow = _AllowList(keys.authorized)
        if not self.allow.keys:
            raise ValueError(f"no authorized controller keys in {keys.authorized}. Fix: run `robo-hybrid keys`")
        self.auth = ThreadAuthenticator(ctx)
        self.auth.start()
        self.auth.configure_curve_callback(domain="*", credentials_provider=self.allow)

    @property
    def refused(self) -> int:
        """Handshakes refused by the allow-list so far."""
        return self.allow.refused

    def secure(self, sock: zmq.Socket) -> None:
        """Make `sock` a CURVE server (before bind)."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True

    def stop(self) -> None:
        """Stop the ZAP thread."""
        self.auth.stop()


def secure_client(sock: zmq.Socket, keys: LinkKeys) -> None:
    """Make `sock` a CURVE client with the controller's key pair, pinning the server's public key (before connect)."""
    public, secret = load_pair(keys.controller_secret)
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.curve_serverkey = load_public(keys.server_public)
