"""vqz's training world (``pip install 'vqz[train]'``): PyTorch trainers whose only product is weights files.

It imports the coding runtime (``vqz.codec``, ``vqz.bitstream``) to code its training pairs and to
check what it exports; the runtime never imports it. Exported weights (safetensors + ONNX graphs) are
the only bridge between the two worlds.
"""
