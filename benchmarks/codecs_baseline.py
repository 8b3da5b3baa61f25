"""Same-budget baselines: CompressAI's bmshj2018 models trained by ``vqz train``.

``factorized-samebudget`` and ``hyperprior-samebudget`` are CompressAI's
``FactorizedPrior`` / ``ScaleHyperprior`` trained by the project's own training code
(:mod:`vqz.training.train_baseline`) on the same data with the same budget (steps, batch,
crop) as the shipped vqz model: the fair, same-budget comparison. They are not CompressAI's
published weights.

Settings are the ``lmbda`` values of the weights files found for the family in the baselines
folder (``$VQZ_BASELINE_PATH``, default ``benchmarks/baselines/``), each written by
``vqz export-model RUN -o benchmarks/baselines/<family>-<lmbda>.safetensors``. Without any
such file the codec is unavailable (:class:`CodecUnavailable`) and the bench skips it.

Encoding is ``model.compress`` and decoding ``model.decompress``, so the rate is from real
bytes. File layout (big-endian): ``b"CAIs"``, u8 family (1 factorized, 2 hyperprior),
f64 lmbda, u32 weights id (first 4 bytes of the weights file's SHA-256), u16 height,
u16 width, u16 latent height, u16 latent width, u8 number of strings, then per string a u32
length and the bytes. The decoder refuses a file made with other weights and trailing bytes.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import struct
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from vqz.benchmarks.adapter import Codec, Setting
from vqz.benchmarks.codecs_learned import compressai_compress, compressai_decompress, pack_strings, unpack_strings
from vqz.benchmarks.errors import BenchmarkError, CodecUnavailable

from vqz.errors import VqzError

__all__ = ["BASELINE_PATH_ENV", "FactorizedSameBudgetCodec", "HyperpriorSameBudgetCodec", "baselines_dir"]

BASELINE_PATH_ENV = "VQZ_BASELINE_PATH"
"""Environment variable naming the folder of baseline weights files."""

_MAGIC = b"CAIs"
_HEADER = struct.Struct(">4sBdIHHHHB")  # magic, family, lmbda, weights id, height, width, latent h, latent w, n strings
_FAMILY_CODES = {"bmshj2018-factorized": 1, "bmshj2018-hyperprior": 2}


def baselines_dir() -> Path:
    """``$VQZ_BASELINE_PATH`` if set, else the ``baselines`` folder beside this module."""
    return Path(os.environ.get(BASELINE_PATH_ENV) or Path(__file__).resolve().parent / "baselines")


class _SameBudgetCodec(Codec):
    """A CompressAI model of ``family`` per weights file; settings are their ``lmbda`` values."""

    family: ClassVar[str]

    def __init__(self, directory: Path | None = None) -> None:
        if importlib.util.find_spec("compressai") is None:  # found, not imported: that costs seconds
            raise CodecUnavailable(f"{self.name}: compressai is not installed")
        try:
            from vqz.training.train_baseline import read_baseline_info
        except ImportError as exc:
            raise CodecUnavailable(f"{self.name}: torch/safetensors not importable: {exc}") from exc
        self.directory = Path(directory) if directory is not None else baselines_dir()
        files = sorted(self.directory.glob("*.safetensors")) if self.directory.is_dir() else []
        self._infos: dict[float, Any] = {}
        for path in files:
            try:
                info = read_baseline_info(path)
            except VqzError:
                continue  # another safetensors file, not baseline weights
            if info.family != self.family:
                continue
            if info.lmbda in self._infos:
                raise CodecUnavailable(f"{self.name}: two weights files for lmbda {info.lmbda}: "
                                       f"{self._infos[info.lmbda].path.name} and {path.name}")
            self._infos[info.lmbda] = info
        if not self._infos:
            raise CodecUnavailable(
                f"{self.name}: no {self.family} weights in {self.directory}; train and export them with "
                f"`vqz train configs/baseline-{self.family.split('-')[1]}.toml --lmbda L` and "
                f"`vqz export-model runs/{self.family}-L -o {self.directory}/{self.family}-L.safetensors` "
                "(see benchmarks/README.md)")
        self._models: dict[float, tuple[Any, int]] = {}

    @property
    def description(self) -> str:
        infos = list(self._infos.values())

        def values(attr: str) -> str:
            return "/".join(str(v) for v in sorted({getattr(i, attr) for i in infos}))

        return (f"CompressAI {importlib.metadata.version('compressai')} {self.family} (N={values('N')}, M={values('M')}), "
                f"same training budget as vqz (trained by vqz train): {values('steps')} steps of "
                f"{values('batch')} crops of {values('crop')} px from {values('data')}; "
                f"setting = lmbda; weights from {self.directory}")

    def settings(self) -> list[Setting]:
        return sorted(self._infos)

    def prepare(self, setting: Setting) -> None:
        self._model(setting)

    def _model(self, setting: Setting) -> tuple[Any, int]:
        """(model, weights id) for ``setting``, loaded once."""
        lmbda = float(setting)
        if lmbda not in self._infos:
            raise BenchmarkError(f"{self.name}: no weights for lmbda {setting!r}; "
                                 f"settings: {', '.join(map(str, self.settings()))}")
        if lmbda not in self._models:
            from vqz.training.train_baseline import load_baseline

            path = self._infos[lmbda].path
            try:
                model, _ = load_baseline(path)
            except (VqzError, RuntimeError, KeyError) as exc:
                raise BenchmarkError(f"{self.name}: cannot load {path}: {exc}") from exc
            weights_id = int.from_bytes(hashlib.sha256(path.read_bytes()).digest()[:4], "big")
            self._models[lmbda] = (model, weights_id)
        return self._models[lmbda]

    def encode(self, img: np.ndarray, setting: Setting) -> bytes:
        model, weights_id = self._model(setting)
        strings, (l_h, l_w) = compressai_compress(model, img, self.name)
        height, width = img.shape[:2]
        header = _HEADER.pack(_MAGIC, _FAMILY_CODES[self.family], float(setting), weights_id,
                              height, width, l_h, l_w, len(strings))
        return pack_strings(header, strings)

    def decode(self, data: bytes) -> np.ndarray:
        if len(data) < _HEADER.size:
            raise BenchmarkError(f"{self.name}: truncated header")
        magic, family, lmbda, weights_id, height, width, l_h, l_w, count = _HEADER.unpack_from(data)
        if magic != _MAGIC or family != _FAMILY_CODES[self.family]:
            raise BenchmarkError(f"{self.name}: not a file of this adapter")
        model, expected_id = self._model(lmbda)
        if weights_id != expected_id:
            raise BenchmarkError(f"{self.name}: the file was made with other weights for lmbda {lmbda}")
        strings = unpack_strings(data, _HEADER.size, count, self.name)
        return compressai_decompress(model, strings, (l_h, l_w), (height, width), self.name)


class FactorizedSameBudgetCodec(_SameBudgetCodec):
    """bmshj2018-factorized trained by ``vqz train`` with vqz's budget; settings = lmbda."""

    name = "factorized-samebudget"
    label = "bmshj2018-factorized, same training budget as vqz (trained by vqz train)"
    family = "bmshj2018-factorized"


class HyperpriorSameBudgetCodec(_SameBudgetCodec):
    """bmshj2018-hyperprior trained by ``vqz train`` with vqz's budget; settings = lmbda."""

    name = "hyperprior-samebudget"
    label = "bmshj2018-hyperprior, same training budget as vqz (trained by vqz train)"
    family = "bmshj2018-hyperprior"
