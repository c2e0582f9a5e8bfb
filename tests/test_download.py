"""The PhysioNet downloader against a real HTTP server on loopback."""

import hashlib
import http.server
import io
import threading
import zipfile

import pytest

from ecgllm.cli import main
from ecgllm.data.dataset import check_folder
from ecgllm.data.download import download_cinc2017
from ecgllm.errors import DownloadError


def make_zip(cinc_dir, names=("A00001", "A00002")) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("training2017/REFERENCE.csv", "".join(f"{n},N\n" for n in names))
        for name in names:
            for suffix in (".mat", ".hea"):
                archive.write(cinc_dir / f"{name}{suffix}", f"training2017/{name}{suffix}")
    return buffer.getvalue()


@pytest.fixture
def server(cinc_dir):
    """Serves /good.zip, /truncated.zip (announces more bytes than it sends), /notzip.zip and 404s."""
    good = make_zip(cinc_dir)
    routes = {"/good.zip": (good, len(good)), "/truncated.zip": (good[: len(good) // 2], len(good)),
              "/notzip.zip": (b"<html>login</html>", 18)}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path not in routes:
                self.send_error(404)
                return
            body, announced = routes[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(announced))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hashlib.sha256(good).hexdigest()
    httpd.shutdown()


def test_download_verify_unpack(server, tmp_path):
    base, digest = server
    folder = download_cinc2017(tmp_path, f"{base}/good.zip", sha256=digest, progress=False)
    assert folder == tmp_path / "training2017"
    assert len(check_folder(folder, progress=False).records) == 2
    assert not list(tmp_path.glob("*.zip*"))  # archive and partial file are gone


def test_truncated_download_fails_and_leaves_nothing(server, tmp_path):
    base, _ = server
    with pytest.raises(DownloadError, match="truncated|download failed"):
        download_cinc2017(tmp_path, f"{base}/truncated.zip", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_checksum_not_zip_and_404(server, tmp_path):
    base, _ = server
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download_cinc2017(tmp_path, f"{base}/good.zip", sha256="0" * 64, progress=False)
    with pytest.raises(DownloadError, match="not a valid zip"):
        download_cinc2017(tmp_path, f"{base}/notzip.zip", progress=False)
    with pytest.raises(DownloadError, match="404"):
        download_cinc2017(tmp_path, f"{base}/missing.zip", progress=False)


def test_cli_download(server, tmp_path, capsys):
    base, _ = server
    assert main(["-q", "data", "download", "--out", str(tmp_path), "--url", f"{base}/good.zip"]) == 0
    assert "data ready" in capsys.readouterr().out
    assert main(["-q", "data", "download", "--out", str(tmp_path / "t"), "--url", f"{base}/truncated.zip"]) == 2
