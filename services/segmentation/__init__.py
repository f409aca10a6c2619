"""Segmentation service: MobileSAM (vit_t, PyTorch) masks from clicks and boxes.

The only process of the product that imports torch. The heavy image encoder runs once per
image (cached by content hash); each further click runs only the prompt encoder and the mask
decoder.
"""
