"""Which packs are DIP packs: asked by `grouper group` for every pack, before anything of DIP is loaded."""
from __future__ import annotations

from pathlib import Path

DIP_FILE = "scheme.dip"


def is_dip_pack(pack: str | Path | None) -> bool:
    """True for a .dip file or a folder holding scheme.dip (and no scheme.grp)."""
    if pack is None:
        return False
    path = Path(pack)
    if path.is_dir():
        return (path / DIP_FILE).is_file() and not (path / "scheme.grp").is_file()
    return path.suffix == ".dip"
