"""Fetching the CinC 2017 training set from PhysioNet: progress, verification, safe unpacking."""

import hashlib
import logging
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from ecgllm.errors import DataFolderError, DownloadError

logger = logging.getLogger(__name__)

PHYSIONET_URL = "https://physionet.org/files/challenge-2017/1.0.0/training2017.zip"
CHUNK = 1 << 20


def fetch(url: str, target: Path, progress: bool = True, timeout: float = 60.0) -> str:
    """Stream `url` to `target`; fail if fewer bytes arrive than the server announced. Returns the SHA-256."""
    digest = hashlib.sha256()
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, partial.open("wb") as out:
            expected = int(response.headers.get("Content-Length") or 0) or None
            received = 0
            with tqdm(total=expected, unit="B", unit_scale=True, desc=f"downloading {target.name}",
                      disable=not progress) as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except (OSError, ValueError) as error:  # URLError, HTTPError, timeouts and incomplete reads are OSErrors
        partial.unlink(missing_ok=True)
        raise DownloadError(f"{url}: download failed ({error})") from None
    if expected is not None and received != expected:
        partial.unlink(missing_ok=True)
        raise DownloadError(f"{url}: truncated download, {received} of {expected} bytes")
    partial.replace(target)
    return digest.hexdigest()


def unpack(archive: Path, out_dir: Path) -> None:
    """Check every member's CRC, refuse paths that leave `out_dir`, then extract."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            broken = zipped.testzip()
            if broken is not None:
                raise DownloadError(f"{archive}: corrupt member {broken}")
            root = out_dir.resolve()
            for member in zipped.namelist():
                if not (root / member).resolve().is_relative_to(root):
                    raise DownloadError(f"{archive}: member {member!r} would be written outside {out_dir}")
            zipped.extractall(out_dir)
    except zipfile.BadZipFile as error:
        raise DownloadError(f"{archive}: not a valid zip file ({error})") from None


def download_cinc2017(out_dir: str | Path, url: str = PHYSIONET_URL, sha256: str | None = None,
                      progress: bool = True, keep_archive: bool = False) -> Path:
    """Download, verify and unpack `training2017.zip` into `out_dir`; returns the folder holding REFERENCE.csv."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / Path(urllib.request.urlparse(url).path).name
    digest = fetch(url, archive, progress)
    if sha256 is not None and digest != sha256.lower():
        archive.unlink()
        raise DownloadError(f"{url}: checksum mismatch (got sha256 {digest}, expected {sha256})")
    logger.info("downloaded %s (sha256 %s)", archive, digest)
    unpack(archive, out_dir)
    if not keep_archive:
        archive.unlink()
    found = sorted(p.parent for p in out_dir.rglob("REFERENCE.csv"))
    if not found:
        raise DataFolderError(f"{url}: the archive holds no REFERENCE.csv; not a CinC 2017 training set")
    return found[0]
