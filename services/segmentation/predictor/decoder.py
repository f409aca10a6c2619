"""One click without the encoder: prompt encoder, mask decoder, masks at the image's size.

`SamPredictor.predict` (mobile_sam) with the same arithmetic and less work, so that its
masks, scores and low-resolution logits are equal to the last bit (tests compare them):

- the dense positional encoding depends on the weights only: computed once, not per click;
- the first transposed convolution of the output upscaling gets a channels-last input with
  plain strides, oneDNN's fast path (about twice as fast); its output goes back to the usual
  layout before the layer norm, whose reduction order depends on the layout;
- only the masks that are answered are upscaled to the image size (SamPredictor upscales
  three to 1024x1024 and then to the image size for every click).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from services.segmentation.predictor.prompts import PromptArrays


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> the same values in channels-last memory with plain strides.

    `Tensor.contiguous(memory_format=...)` keeps a transposed view as it is when its batch
    stride is unusual (size-1 batch), and oneDNN then takes its slow path: copy instead.
    """
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device,
                      memory_format=torch.channels_last)
    return out.copy_(x)


@dataclass(frozen=True)
class Decoded:
    """The decoder's answer to one click: `low_res` (C, 256, 256) float32 logits and
    `scores` (C,) predicted IoU; C is 3 with multimask output, else 1."""

    low_res: torch.Tensor
    scores: NDArray[np.float32]


class ClickDecoder:
    """Prompt encoder + mask decoder of a MobileSAM model on a cached image embedding."""

    def __init__(self, sam: Any) -> None:
        from mobile_sam.utils.transforms import ResizeLongestSide

        self.sam = sam
        self.transform = ResizeLongestSide(sam.image_encoder.img_size)
        with torch.inference_mode():
            self.dense_pe = sam.prompt_encoder.get_dense_pe()  # (1, 256, 64, 64)

    def decode(self, features: torch.Tensor, original_size: tuple[int, int],
               prompts: PromptArrays) -> Decoded:
        """Masks for `prompts` on an image of `original_size` (H, W) whose embedding is
        `features` (1, 256, 64, 64). Call under `torch.inference_mode()`."""
        points = boxes = mask_input = None
        if prompts.point_coords is not None and prompts.point_labels is not None:
            coords = self.transform.apply_coords(prompts.point_coords, original_size)
            points = (torch.as_tensor(coords, dtype=torch.float)[None, :, :],
                      torch.as_tensor(prompts.point_labels, dtype=torch.int)[None, :])
        if prompts.box is not None:
            box = self.transform.apply_boxes(prompts.box, original_size)
            boxes = torch.as_tensor(box, dtype=torch.float)[None, :]
        if prompts.mask_input is not None:
            mask_input = torch.as_tensor(prompts.mask_input, dtype=torch.float)[None, :, :, :]
        sparse, dense = self.sam.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        low_res, iou = self._masks(features, sparse, dense)
        keep = slice(1, None) if prompts.multimask else slice(0, 1)
        return Decoded(low_res[0, keep], iou[0, keep].numpy())

    def _masks(self, features: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """MaskDecoder.predict_masks for one image and one prompt set:
        -> logits (1, 4, 256, 256), IoU (1, 4)."""
        dec = self.sam.mask_decoder
        output_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
        tokens = torch.cat((output_tokens[None], sparse), dim=1)  # (1, 5 + N, 256)
        # The image tokens stay a transposed view of (1, 256, 64, 64), as in MaskDecoder:
        # contiguous ones would be faster to add and normalise, but the first layer's linear
        # projections then round differently.
        src = features + dense  # (1, 256, 64, 64)
        b, c, h, w = src.shape
        hs, keys = dec.transformer(src, self.dense_pe, tokens)  # (1, T, 256), (1, 4096, 256)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1:1 + dec.num_mask_tokens, :]

        up = dec.output_upscaling  # deconv, LayerNorm2d, GELU, deconv, GELU
        grid = channels_last(keys.transpose(1, 2).view(b, c, h, w))
        x = up[0](grid).contiguous()  # (1, 64, 128, 128)
        x = up[4](up[3](up[2](up[1](x))))  # (1, 32, 256, 256)
        hyper_in = torch.stack([mlp(mask_tokens_out[:, i, :])
                                for i, mlp in enumerate(dec.output_hypernetworks_mlps)], dim=1)
        b, c, h, w = x.shape
        masks = (hyper_in @ x.view(b, c, h * w)).view(b, -1, h, w)
        return masks, dec.iou_prediction_head(iou_token_out)

    def upscale(self, low_res: torch.Tensor, input_size: tuple[int, int],
                original_size: tuple[int, int]) -> NDArray[np.bool_]:
        """(K, 256, 256) logits -> (K, H, W) bool masks at the original size, exactly as
        SamPredictor computes them (to 1024x1024, crop the padding, to (H, W), > 0)."""
        logits = self.sam.postprocess_masks(low_res[None], input_size, original_size)
        masks: NDArray[np.bool_] = (logits[0] > self.sam.mask_threshold).numpy()
        return masks
