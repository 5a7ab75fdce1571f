"""μSAM's automatic-segmentation network for BioImage Model Zoo packages (standalone).

This file is copied into the packages :func:`cellnb.export_model` writes for
``microsam`` runs, as their architecture: it needs torch, segment_anything
and torch_em only, not cellnb. The network is SAM's ViT image encoder
(segment_anything's ``ImageEncoderViT``) with torch_em's ``UNETR`` decoder,
as micro_sam's ``get_unetr`` builds it; it maps a TL window scaled to 0-255
to three maps: foreground probability, distance to the cell centre and to
the cell boundary.
"""

from functools import partial

import torch
from segment_anything.modeling import ImageEncoderViT
from torch_em.model import UNETR


class SamUNETR(UNETR):
    """SAM's image encoder of the given size with micro_sam's UNETR decoder.

    Parameters
    ----------
    encoder : dict
        ``ImageEncoderViT`` keyword arguments (``img_size``, ``patch_size``,
        ``embed_dim``, ``depth``, ``num_heads``, ``mlp_ratio``, ``out_chans``,
        ``qkv_bias``, ``use_rel_pos``, ``window_size``, ``global_attn_indexes``);
        SAM's layer norm (eps 1e-6) and GELU.
    initial_features : int
        Width of the decoder's last stage (64 for micro_sam's decoders).
    use_conv_transpose : bool
        Upsample with transposed convolutions (else interpolation + conv).
    """

    def __init__(self, encoder: dict, initial_features: int = 64,
                 use_conv_transpose: bool = False):
        image_encoder = ImageEncoderViT(norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                                        act_layer=torch.nn.GELU, rel_pos_zero_init=True,
                                        **encoder)
        super().__init__(backbone="sam", encoder=image_encoder, out_channels=3,
                         use_sam_stats=True, final_activation="Sigmoid",
                         use_skip_connection=False, resize_input=True,
                         use_conv_transpose=use_conv_transpose,
                         initial_features=initial_features)
