"""Rate-distortion and speed benchmarks of vqz against classic and learned codecs.

Modules, one job each:

* :mod:`~vqz.benchmarks.metrics`  - PSNR, MS-SSIM, MS-SSIM in dB, Bjøntegaard delta rate;
* :mod:`~vqz.benchmarks.adapter` - the one :class:`Codec` interface every codec implements;
* :mod:`~vqz.benchmarks.codecs_pillow` - JPEG, WebP, AVIF, JPEG 2000, JPEG XL through Pillow;
* :mod:`~vqz.benchmarks.codecs_learned` - vqz (through :mod:`vqz.api`) and CompressAI's
  untrained hyperprior (speed only);
* :mod:`~vqz.benchmarks.codecs_baseline` - CompressAI's bmshj2018 factorized/hyperprior trained by
  ``vqz train`` with vqz's training budget (weights in ``benchmarks/baselines/``);
* :mod:`~vqz.benchmarks.registry` - codec names -> adapters;
* :mod:`~vqz.benchmarks.datasets` - ``kodak`` (downloaded, SHA-256 verified) or a folder;
* :mod:`~vqz.benchmarks.runner` - codecs x settings x images -> resumable per-row CSV;
* :mod:`~vqz.benchmarks.aggregate` - CSV rows -> per-setting averages, CompressAI JSON, BD tables;
* :mod:`~vqz.benchmarks.plots` - RD plots (PNG + SVG);
* :mod:`~vqz.benchmarks.visual` - the same crop from every codec at matched bpp;
* :mod:`~vqz.benchmarks.html_report` - the self-contained HTML page;
* :mod:`~vqz.benchmarks.report` - writes JSON, markdown, plots and the HTML report;
* :mod:`~vqz.benchmarks.speed` - encode/decode time and peak memory on 4K/8K images;
* :mod:`~vqz.benchmarks.cli` - ``vqz bench`` and ``vqz bench-speed`` (``register(app)``);
* :mod:`~vqz.benchmarks.errors` - the exceptions (all :class:`vqz.errors.VqzError`).

Usage and the full Kodak command lines: ``benchmarks/README.md``.
"""
