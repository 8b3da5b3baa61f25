"""vqz's coding runtime: the encoder and decoder of ``.vqz`` files with a loaded model (``pip install vqz``).

It runs on numpy, Pillow, constriction and ONNX Runtime and may import :mod:`vqz.bitstream` and :mod:`vqz.errors`;
never torch, compressai, onnx or :mod:`vqz.training` (``tests/runtime/test_worlds.py`` parses every module's
imports). The networks come from exported weights files and graphs (``weights/``), the only bridge from the
training world. Modules, one job each:

* :mod:`~vqz.codec.pipeline` - image <-> ``.vqz`` bytes: pad, transforms, quantize, entropy-code, pack;
* :mod:`~vqz.codec.levels` - the quality levels' plans (stages, residual step);
* :mod:`~vqz.codec.engine`, :mod:`~vqz.codec.tiling` - the transforms on ONNX Runtime, tiled for large images;
* :mod:`~vqz.codec.vq`, :mod:`~vqz.codec.search` - the residual quantizer and the encoder's effort levels;
* :mod:`~vqz.codec.entropy_model`, :mod:`~vqz.codec.stage_context` - the frozen integer probability tables;
* :mod:`~vqz.codec.residual`, :mod:`~vqz.codec.postfilter` - the pixel residual layer and the post-filters;
* :mod:`~vqz.codec.realism`, :mod:`~vqz.codec.light` - the realistic and light transforms (decoder choices);
* :mod:`~vqz.codec.rate_control` - target size, bpp and PSNR;
* :mod:`~vqz.codec.weights`, :mod:`~vqz.codec.registry`, :mod:`~vqz.codec.config` - weights files and models;
* :mod:`~vqz.codec.image`, :mod:`~vqz.codec.metadata`, :mod:`~vqz.codec.padding`, :mod:`~vqz.codec.photos` -
  pixels, metadata and image files in and out.
"""
