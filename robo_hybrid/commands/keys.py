"""`robo-hybrid keys [dir=~/.config/robo_hybrid/keys] [force=true]`: the robot link's CURVE key files.

Makes the robot side's and the controller's key pairs and puts the controller's public key on the robot
side's allow-list (see robo_hybrid.deploy.auth for the layout). Existing keys are kept unless force=true.
To let another controller in, copy its `controller.key` (public only) into `authorized/` on the robot.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from robo_hybrid.cliargs import CliArgError, parse
from robo_hybrid.deploy.config import DEFAULT_KEYS_DIR


@dataclass
class KeysArgs:
    """Arguments of `robo-hybrid keys`."""

    dir: str = DEFAULT_KEYS_DIR
    """Keys folder (DeployConfig.keys_dir points at the same place)."""
    force: bool = False
    """Replace existing keys (every controller then needs the new ones)."""


def main(args: list[str]) -> int:
    """Create (or keep) the key files; print where they are."""
    try:
        a = parse(KeysArgs, args)
    except CliArgError as e:
        print(f"keys: {e}", file=sys.stderr)
        return 2
    from robo_hybrid.deploy.auth import ensure_keys

    keys = ensure_keys(a.dir, force=a.force)
    print(f"keys in {keys.root}: server {keys.server_public}, controller {keys.controller_secret}, "
          f"allow-list {keys.authorized}/")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
