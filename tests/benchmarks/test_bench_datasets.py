"""Claims about dataset resolution and the Kodak downloader.

Downloads are tested against a local ``http.server`` on 127.0.0.1 serving the shared Kodak
copies; a guard makes any other connection (or name lookup) in these tests fail loudly, so
the default test run never touches the internet.
"""

from __future__ import annotations

import hashlib
import http.server
import ipaddress
import socket
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from vqz.benchmarks import datasets
from vqz.benchmarks.datasets import KODAK_PIXEL_SHA256, KODAK_SHA256, fetch_kodak, list_images, resolve_dataset
from vqz.benchmarks.errors import DatasetError

KODAK = Path(__file__).resolve().parents[3] / "shared" / "data" / "kodak"


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Refuse non-loopback connections and lookups; keep the cache and URL away from real ones."""
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]  # type: ignore[index]
            if not ipaddress.ip_address(host).is_loopback:
                raise AssertionError(f"test tried to connect to {host}")
        return real_connect(self, address)  # type: ignore[arg-type]

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host not in ("localhost", None) and not ipaddress.ip_address(str(host)).is_loopback:
            raise AssertionError(f"test tried to resolve {host}")
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setenv("VQZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VQZ_KODAK_URL", "http://127.0.0.1:9/")  # discard port: nothing listens


def _serve(folder: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def kodak() -> Path:
    if not KODAK.is_dir():
        pytest.skip(f"{KODAK} is not available")
    return KODAK


@pytest.fixture
def kodak_url(kodak: Path) -> Iterator[str]:
    yield from _serve(kodak)


def test_hard_coded_checksums_match_the_shared_kodak_files(kodak: Path) -> None:
    assert sorted(KODAK_SHA256) == [f"kodim{i:02d}.png" for i in range(1, 25)]
    for name, digest in KODAK_SHA256.items():
        path = kodak / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, name
        with Image.open(path) as im:
            assert hashlib.sha256(np.asarray(im.convert("RGB")).tobytes()).hexdigest() == KODAK_PIXEL_SHA256[name]


@pytest.mark.network
def test_fetch_kodak_downloads_and_verifies_the_24_images_once(tmp_path: Path, kodak_url: str) -> None:
    fetched: list[str] = []
    paths = fetch_kodak(tmp_path / "k", base_url=kodak_url, on_file=fetched.append)
    assert [p.name for p in paths] == sorted(KODAK_SHA256) == fetched
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() == KODAK_SHA256[p.name] for p in paths)
    assert not list((tmp_path / "k").glob("*.part"))
    again: list[str] = []
    assert fetch_kodak(tmp_path / "k", base_url=kodak_url, on_file=again.append) == paths
    assert again == []


@pytest.mark.network
def test_dataset_kodak_uses_the_cache_dir_and_url_from_the_environment(
        tmp_path: Path, kodak_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VQZ_KODAK_URL", kodak_url.rstrip("/"))  # a missing slash is tolerated
    images = resolve_dataset("kodak", limit=3)
    assert [p.name for p in images] == ["kodim01.png", "kodim02.png", "kodim03.png"]
    assert images[0].parent == tmp_path / "cache" / "kodak"


def _link_all_but_first(kodak: Path, dest: Path) -> None:
    dest.mkdir()
    for name in sorted(KODAK_SHA256)[1:]:
        (dest / name).symlink_to(kodak / name)


@pytest.mark.network
def test_a_download_with_the_wrong_content_is_deleted_and_raises(tmp_path: Path, kodak: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / "kodim01.png").write_bytes((kodak / "kodim02.png").read_bytes())  # wrong image
    dest = tmp_path / "k"
    _link_all_but_first(kodak, dest)
    for url in _serve(served):
        with pytest.raises(DatasetError, match="checksum mismatch for kodim01.png") as info:
            fetch_kodak(dest, base_url=url)
        assert "\n" not in str(info.value)
    assert not (dest / "kodim01.png").exists()
    assert not list(dest.glob("*.part"))


@pytest.mark.network
def test_a_re_encoded_png_with_identical_pixels_is_accepted(tmp_path: Path, kodak: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    with Image.open(kodak / "kodim01.png") as im:
        im.save(served / "kodim01.png", compress_level=1)
    assert (served / "kodim01.png").read_bytes() != (kodak / "kodim01.png").read_bytes()
    dest = tmp_path / "k"
    _link_all_but_first(kodak, dest)
    for url in _serve(served):
        paths = fetch_kodak(dest, base_url=url)
    assert paths[0] == dest / "kodim01.png" and paths[0].exists()


@pytest.mark.network
def test_an_unreachable_server_is_a_one_line_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot download http://127.0.0.1:9/kodim01.png"):
        fetch_kodak(tmp_path / "k")  # VQZ_KODAK_URL from the fixture: nothing listens there
    assert not list((tmp_path / "k").iterdir())


def test_a_url_scheme_other_than_http_https_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="http, https or file"):
        fetch_kodak(tmp_path, base_url="ftp://127.0.0.1/kodak/")


def test_a_folder_dataset_lists_images_sorted_and_honours_limit(tmp_path: Path) -> None:
    for name in ("b.png", "a.jpg", "c.txt", "d.PNG"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.png", "d.PNG"]
    assert [p.name for p in resolve_dataset(str(tmp_path), limit=2)] == ["a.jpg", "b.png"]


def test_missing_or_empty_folders_and_bad_limits_are_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        resolve_dataset(str(tmp_path / "nope"))
    with pytest.raises(DatasetError, match="no images"):
        resolve_dataset(str(tmp_path))
    with pytest.raises(DatasetError, match="limit"):
        resolve_dataset(str(tmp_path), limit=0)


def test_load_rgb_drops_alpha_and_reports_unreadable_files(tmp_path: Path) -> None:
    Image.new("RGBA", (5, 4), (10, 20, 30, 40)).save(tmp_path / "a.png")
    rgb = datasets.load_rgb(tmp_path / "a.png")
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8 and tuple(rgb[0, 0]) == (10, 20, 30)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="cannot read image"):
        datasets.load_rgb(tmp_path / "bad.png")
