"""The light transforms' trainers: run, resume, log held-out validation and export files the runtime uses."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest

from conftest import photo_crop, write_training_images

import vqz
from vqz.api import decode_file
from vqz.codec import light as light_module


@pytest.mark.slow  # codes a few images with the model and trains both (several seconds)
def test_light_trainers_run_resume_log_and_export(tmp_path, monkeypatch):
    from vqz.training.export import export_light
    from vqz.training.light import LightAnalysisTrainConfig, LightTrainConfig, train_light, train_light_analysis

    data = tmp_path / "photos"
    data.mkdir()
    write_training_images(data, 0.05)
    cache = str(tmp_path / "codes")
    cfg = LightTrainConfig(data=str(data), out=str(tmp_path / "synthesis"), cache=cache, steps=2, batch=2, crop=32,
                           checkpoint_every=2, validate_every=2, heldout_crop=32, precision="fp32",
                           head_blocks=1, tail_channels=(16, 8))
    synthesis = train_light(cfg, log=lambda message: None)
    train_light(dataclasses.replace(cfg, steps=4), resume=True, log=lambda message: None)
    rows = list(csv.DictReader(open(tmp_path / "synthesis" / "log.csv")))
    assert [r["step"] for r in rows] == ["model", "2", "4"] and all(float(r["psnr_k1"]) > 5 for r in rows)
    acfg = LightAnalysisTrainConfig(data=str(data), out=str(tmp_path / "analysis"), cache=cache, steps=2, batch=2,
                                    crop=32, checkpoint_every=2, validate_every=2, precision="fp32", widths=(16, 32, 128))
    analysis = train_light_analysis(acfg, log=lambda message: None)
    rows = list(csv.DictReader(open(tmp_path / "analysis" / "log.csv")))
    assert [r["step"] for r in rows] == ["2"] and 0 <= float(rows[0]["heldout_codes_equal"]) <= 1
    installed = tmp_path / "installed"
    installed.mkdir()
    export_light(synthesis, installed / "tiny-light.safetensors", "tiny-light")
    export_light(analysis, installed / "tiny-lighta.safetensors", "tiny-lighta")
    monkeypatch.setenv("VQZ_MODEL_PATH", str(installed))
    light_module._installed.cache_clear()
    try:
        data_bytes = vqz.encode(photo_crop(), quality=2, effort=0)
        assert data_bytes != vqz.encode(photo_crop(), quality=2)  # an untrained head: other codes, a valid file
        decoded = decode_file(data_bytes, fast=True)
        assert decoded.fast and decoded.pixels.shape == photo_crop().shape and decoded.pixels.dtype == np.uint8
    finally:
        light_module._installed.cache_clear()
