"""A local wheelhouse, built offline by repacking distributions installed next to Fleet into wheels."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from importlib import metadata
from pathlib import Path

SKIPPED_METADATA = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def build_wheelhouse(path: Path, names: tuple[str, ...]) -> Path:
    """path, holding a wheel of each installed distribution in names."""
    path.mkdir(parents=True, exist_ok=True)
    for name in names:
        repack(name, path)
    return path


def repack(name: str, wheelhouse: Path) -> Path:
    """A wheel of the installed distribution name, rebuilt from its files (pure-Python packages only)."""
    dist = metadata.distribution(name)
    files = [f for f in dist.files or [] if ".." not in f.parts and f.suffix != ".pyc"]
    info = next(f.parts[0] for f in files if f.parts[0].endswith(".dist-info"))
    wheel_meta = dist.read_text("WHEEL") or "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    tag = next(line.split(": ", 1)[1] for line in wheel_meta.splitlines() if line.startswith("Tag: "))
    target = wheelhouse / f"{info.removesuffix('.dist-info')}-{tag}.whl"
    record = []
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as whl:
        for file in files:
            if file.parts[0] == info and file.name in SKIPPED_METADATA:
                continue
            data = Path(str(dist.locate_file(file))).read_bytes()
            whl.writestr(file.as_posix(), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{file.as_posix()},sha256={digest},{len(data)}")
        record.append(f"{info}/RECORD,,")
        whl.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return target
