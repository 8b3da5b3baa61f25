"""Benchmark image sets: Kodak (downloaded once, verified) or any folder of images.

``resolve_dataset("kodak")`` uses ``<cache>/kodak`` where ``<cache>`` is ``$VQZ_CACHE`` or
``~/.cache/vqz``. Missing files are fetched from ``$VQZ_KODAK_URL`` (default
:data:`DEFAULT_KODAK_URL`; ``http``, ``https`` and ``file`` URLs) with :mod:`urllib` and
checked against :data:`KODAK_SHA256`. Because mirrors of the suite re-encode the PNGs (same
pixels, different bytes), a file whose bytes do not match is accepted only if its decoded RGB
pixels match :data:`KODAK_PIXEL_SHA256`; otherwise it is deleted and
:class:`~vqz.benchmarks.errors.DatasetError` is raised.

``resolve_dataset(DIR)`` lists the images directly in ``DIR`` (sorted by name).
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from vqz.benchmarks.errors import DatasetError

__all__ = [
    "DEFAULT_KODAK_URL",
    "IMAGE_SUFFIXES",
    "KODAK_PIXEL_SHA256",
    "KODAK_SHA256",
    "cache_root",
    "fetch_kodak",
    "list_images",
    "load_rgb",
    "resolve_dataset",
]

DEFAULT_KODAK_URL = "https://r0k.us/graphics/kodak/kodak/"
"""Where the 24 Kodak PNGs are fetched from unless ``$VQZ_KODAK_URL`` says otherwise."""

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp"})

MAX_DOWNLOAD_BYTES = 8 << 20
"""Largest accepted download of one Kodak file, in bytes (the real ones are < 1 MiB)."""

KODAK_SHA256: dict[str, str] = {
    "kodim01.png": "6b4fbe6f3e8e0e20150d5b0c32248bf072e22b5989d415f96f796c5b7004a70f",
    "kodim02.png": "1788370471429d992750a09caf6702ac74e56962447de02520d4b161738c0369",
    "kodim03.png": "b9c800ee568f0b18c983817df08d9f7f24a7ddb3abfdc31bde9234c4fde83137",
    "kodim04.png": "0c60c62599ad33fd78b29c36013fbe4120946f6c327c0ef0ec6983297fb48d23",
    "kodim05.png": "ccf694ceb6bbf431e0009ed0d5573a8ff0915095b69ddfb527b91d8325897f5e",
    "kodim06.png": "f4212cc927d1d579c712843cf8320c7eccb571e5ea80456022ffe99d67e9cd5d",
    "kodim07.png": "7cdd6d63ae0a245f6f9d983d740e11c6808c2efc24f8351aad9b5f676c27b55a",
    "kodim08.png": "5a6a089bdb47605287c00d89ebf2a5312981eb998c94b5853d917c93a9066cdb",
    "kodim09.png": "4d8d801592aeaf446978bbd1c83b76c498242d0f684769311a4e7248289500bf",
    "kodim10.png": "7aca487dc83db732a5690b7affe8558e9dadf5bb44a4589ba2b607480a07228b",
    "kodim11.png": "c7c02bd6e942d1181518e3ce2d97cf0451e4494a5e9d6ddee276940e4875d746",
    "kodim12.png": "df571f5e66d1aefd764ea77855e81e3be61528c34962a0fd1d50557502162c1e",
    "kodim13.png": "797949ce1152ef157ff0a1231c95cb8ed7641615e0b0f5f77f851a44aee19e8d",
    "kodim14.png": "08a1898d5702f32e7d9f94a94651d74a62cb9325475775a558b388c8d98f1846",
    "kodim15.png": "416c475f39b0eb9203ce7f77d2af8824f5bffc1a86a4605865017f04c41639b9",
    "kodim16.png": "5d03303693decdf7a1e1e930b5ca6684283aa80a9e7d8d6a842a74fa5f790640",
    "kodim17.png": "19d90e98e5835efae20a6e17e22e5ac6814ee2c8efb32d188ea4359abaf9f5bd",
    "kodim18.png": "83df267dfec61e9b9d3756c422502160b2fab595650c73a8b12940540ad09ec5",
    "kodim19.png": "86560efe85a13413b228ef7e42dde0d439b25a94fb8e2d6fb1dc1631cf48853b",
    "kodim20.png": "1ae187d92b3a4483b6717f7fd08592846ffdfc340c6424f6756627a27f3d8ea7",
    "kodim21.png": "26e193795108c4b5ec47206ae4ff07a353d2492947f7a7ae8d380e042b74027b",
    "kodim22.png": "627b76fccf714b4ddffb739b2eb63ba2817cf5b5a8e222079542dcf2cfdda939",
    "kodim23.png": "85c67d7ea758cb0604fb6980ab0c65091a2eefa7b3b50cbb1bc702a60206dfe5",
    "kodim24.png": "9f1c26df52217bd49f998a720a2ffeba41a535cf826f4ae32e355fb2b0bbc0fe",
}
"""SHA-256 of each Kodak PNG file's bytes."""

KODAK_PIXEL_SHA256: dict[str, str] = {
    "kodim01.png": "a00210743353594464ac67e680a41710f484444ca5f9dfddeb570de25c428273",
    "kodim02.png": "ae5a495df4ec40e0941265440ccf98973915b4190ab803e37a23ca93dd43a07e",
    "kodim03.png": "234e61f585503f2a44400f5561131e8a512ef2c15328cd83d5cdbf10e2616cf2",
    "kodim04.png": "e88e788fca00e6c723bb66ff45edb8cb56091ee284dcb73e3909834f2c96eeb6",
    "kodim05.png": "ed3d1ee770909d3b27903b52ce19ee59a9bf24621a7bf1fb57b90677da880cb6",
    "kodim06.png": "7f45158999fa297d1cfbd292b3e2f3f5b27770701c3473155c211c3f512cc97f",
    "kodim07.png": "4e3664bf6fe865b49f15f7b554efa7dbecaf73ae0e8699f2e307bf07849f1264",
    "kodim08.png": "889c3740e4ed54ca53d11ae735a44d15fa24fe312b3bd1609a80618a4092c208",
    "kodim09.png": "f8453140e63a42301a6dbebb849a3cc40d34e4e59580eb1f372f7f5460df0dbe",
    "kodim10.png": "fabe11b5c4f028394e093a5b5907e5fabc8072da0d5334fb3a38547a7e1be842",
    "kodim11.png": "ab4dd9bf8431e717d33892b3ba03c63bfea3c7fa72c2610010de7df3c194c075",
    "kodim12.png": "f412db2168e599949aac26bd3264f111b23a684f30a21cfd320e9e95bc69bbae",
    "kodim13.png": "875703d56fb9396f478b5d7d3b18e2b77c17147a685c6dc2567e1c574aaf01e3",
    "kodim14.png": "2bd5029ee75ac1697542e5b05624e8afe186e3250abd7513d6a806b52084c2f0",
    "kodim15.png": "b5353e7511277009922ecbdebfc6418fec53aa1b2a08d44fc957a7540825697b",
    "kodim16.png": "ed21745fd32fce95cc2c6af7fc52b1b15e590c7a14ab18ab34bd65ecaf955ac7",
    "kodim17.png": "566bc866664e9b06dc86e2654051b454844efe17322dbf7e24156d8243f1943e",
    "kodim18.png": "3475af71066f3ca8206eb12cfc989ebe9c6e44820a96604e88ae018606e1f7bd",
    "kodim19.png": "7956408ef24222d37ac53f579bd24d5b2c3557b16c657e8b71c1b6ae9f18de1b",
    "kodim20.png": "666ce8f2db5566a123bb081e70618f6f4c4253df960f3b41bb9dcc3dd134f3cf",
    "kodim21.png": "2d6902daf7c4486b7c8c04d834091841a2b38c8f0c81cd7a963a6510b34a2a6a",
    "kodim22.png": "f430842120c108b67725ada96b8b7b2a914f6a0915eacd5595064c6c1a5d70a0",
    "kodim23.png": "81992a83592267e69125666f3e3e04c1819529b4c4c1e55fde0a6a741bac4219",
    "kodim24.png": "e3e3ccc3e795b82a3da66934409dfe98ce0f5aadc6d7767543c506453599bb98",
}
"""SHA-256 of each Kodak image's decoded pixels (``uint8`` RGB, row-major ``tobytes()``)."""


def cache_root() -> Path:
    """The vqz cache folder: ``$VQZ_CACHE`` or ``~/.cache/vqz``."""
    env = os.environ.get("VQZ_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vqz"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _pixel_sha256(path: Path) -> str | None:
    try:
        with Image.open(path) as im:
            return hashlib.sha256(np.asarray(im.convert("RGB")).tobytes()).hexdigest()
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _verified(path: Path, name: str) -> bool:
    return (_sha256_file(path) == KODAK_SHA256[name]
            or _pixel_sha256(path) == KODAK_PIXEL_SHA256[name])


def _download(url: str, dest: Path, timeout_s: float) -> None:
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, part.open("wb") as out:
            size = 0
            for chunk in iter(lambda: response.read(1 << 16), b""):
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise DatasetError(f"{url} is larger than {MAX_DOWNLOAD_BYTES} bytes")
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise DatasetError(f"cannot download {url}: {reason}") from exc
    except DatasetError:
        part.unlink(missing_ok=True)
        raise
    part.replace(dest)


def fetch_kodak(dest: Path | None = None, base_url: str | None = None, timeout_s: float = 60.0,
                on_file: Callable[[str], None] | None = None) -> list[Path]:
    """Make sure the 24 verified Kodak PNGs are in ``dest``; return their paths, sorted.

    ``dest`` defaults to ``cache_root() / "kodak"``; ``base_url`` to ``$VQZ_KODAK_URL`` or
    :data:`DEFAULT_KODAK_URL` (file ``NAME`` is fetched from ``base_url + NAME``).
    Files already present and verified are not downloaded again; a present file that fails
    verification is replaced. ``on_file(name)`` is called before each download. A download
    that fails verification is deleted and raises :class:`DatasetError`.
    """
    folder = dest if dest is not None else cache_root() / "kodak"
    base = base_url or os.environ.get("VQZ_KODAK_URL") or DEFAULT_KODAK_URL
    scheme = urllib.parse.urlsplit(base).scheme
    if scheme not in ("http", "https", "file"):
        raise DatasetError(f"Kodak base URL must be http, https or file, got {base!r}")
    if not base.endswith("/"):
        base += "/"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create dataset folder {folder}: {exc.strerror}") from exc
    paths: list[Path] = []
    for name in sorted(KODAK_SHA256):
        path = folder / name
        if not (path.is_file() and _verified(path, name)):
            if on_file is not None:
                on_file(name)
            url = urllib.parse.urljoin(base, name)
            _download(url, path, timeout_s)
            if not _verified(path, name):
                path.unlink(missing_ok=True)
                raise DatasetError(f"checksum mismatch for {name} downloaded from {url}; file deleted")
        paths.append(path)
    return paths


def list_images(folder: Path) -> list[Path]:
    """Image files (by suffix, see :data:`IMAGE_SUFFIXES`) directly in ``folder``, sorted by name."""
    if not folder.is_dir():
        raise DatasetError(f"dataset folder {folder} does not exist")
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DatasetError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return images


def resolve_dataset(spec: str, limit: int | None = None,
                    on_file: Callable[[str], None] | None = None) -> list[Path]:
    """``"kodak"`` (case-insensitive) or a folder path -> image paths, the first ``limit`` if given."""
    if limit is not None and limit < 1:
        raise DatasetError(f"`limit` must be at least 1, got {limit}")
    if spec.lower() == "kodak" and not Path(spec).is_dir():
        images = fetch_kodak(on_file=on_file)
    else:
        images = list_images(Path(spec).expanduser())
    return images[:limit] if limit is not None else images


def load_rgb(path: Path) -> np.ndarray:
    """An image file -> ``(H, W, 3)`` uint8 RGB array (alpha dropped, palettes expanded)."""
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from exc
