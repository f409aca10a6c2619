"""MobileSAM behind one object: weights, model, encoder cache, prompts, mask encoding.

`weights`, `masks`, `prompts`, `cache` and `errors` never import torch (the CLI's download
command uses `weights`); `model` and `segmenter` do.
"""
