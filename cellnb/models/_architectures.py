"""SAM networks by architecture name: micro_sam's four, and cellnb's reduced test architecture.

``vit_t`` (MobileSAM's TinyViT), ``vit_b``, ``vit_l`` and ``vit_h`` are built
by micro_sam's registry, as micro_sam builds them. ``vit_mini`` is the same
segment_anything classes (``ImageEncoderViT``, ``PromptEncoder``,
``MaskDecoder``, ``TwoWayTransformer``) at a reduced size and input
resolution, for tests and CPU benchmarks: a 256 px input cut into SAM's
16 px patches (a 16 x 16 embedding; its masks come at 64 x 64, a quarter
of the input, as SAM's), a two-block 64-wide ViT, a 128-wide mask decoder
(1.1 M parameters against vit_b's 94 M), and micro_sam's UNETR decoder four
times narrower. Feed it 128 px patches to see cells as SAM sees 512 px
ones. It has no pretrained weights; everything that takes an architecture
takes it (``models.random_checkpoint("vit_mini", path)``,
``load("vit_mini", checkpoint=path)``, ``train(..., model="vit_mini",
checkpoint=path)``).

``cpsam_mini`` is cellpose's ``CPSAM`` (its forward, readout and loss) on a
two-block 64-wide encoder without layer drop, for the ``cellpose`` recipe's
tests.

Code that feeds a SAM reads its input size off the network
(:func:`input_size`), never assumes 1024.
"""

from __future__ import annotations

import warnings

from functools import partial

#: micro_sam's architectures, then cellnb's reduced one.
ARCHITECTURES = ("vit_t", "vit_b", "vit_l", "vit_h", "vit_mini")
#: The reduced test architecture (no pretrained weights exist for it).
TEST_ARCHITECTURE = "vit_mini"

_MINI = {"image_size": 256, "patch_size": 16, "embed_dim": 64, "depth": 2, "num_heads": 2,
         "global_attn_indexes": (1,), "window_size": 4, "prompt_embed_dim": 128,
         "decoder_mlp_dim": 512, "decoder_heads": 4, "iou_hidden_dim": 128}


def architecture_of(name: str) -> str | None:
    """The architecture a model name or zoo name starts with, or None.

    Examples
    --------
    >>> architecture_of("vit_b_lm"), architecture_of("vit_mini"), architecture_of("cpsam")
    ('vit_b', 'vit_mini', None)
    """
    if name.startswith(TEST_ARCHITECTURE):
        return TEST_ARCHITECTURE
    return name[:5] if name[:5] in ARCHITECTURES else None


def _mini():
    import torch
    from segment_anything.modeling import (ImageEncoderViT, MaskDecoder, PromptEncoder, Sam,
                                           TwoWayTransformer)

    c = _MINI
    grid = c["image_size"] // c["patch_size"]
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=c["image_size"], patch_size=c["patch_size"], embed_dim=c["embed_dim"],
            depth=c["depth"], num_heads=c["num_heads"], mlp_ratio=4, qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
            global_attn_indexes=c["global_attn_indexes"], window_size=c["window_size"],
            out_chans=c["prompt_embed_dim"]),
        prompt_encoder=PromptEncoder(
            embed_dim=c["prompt_embed_dim"], image_embedding_size=(grid, grid),
            input_image_size=(c["image_size"], c["image_size"]), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=c["prompt_embed_dim"],
                                          mlp_dim=c["decoder_mlp_dim"],
                                          num_heads=c["decoder_heads"]),
            transformer_dim=c["prompt_embed_dim"], iou_head_depth=3,
            iou_head_hidden_dim=c["iou_hidden_dim"]),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    return sam.eval()


def build_sam(architecture: str):
    """A SAM network (segment_anything ``Sam``) of `architecture`, randomly initialised.

    Draws from torch's global generator, as micro_sam's registry does.

    Examples
    --------
    >>> sam = build_sam("vit_mini")
    >>> input_size(sam), sum(p.numel() for p in sam.parameters())
    (256, 1083776)
    """
    if architecture == TEST_ARCHITECTURE:
        return _mini()
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown SAM architecture {architecture!r}; choose one of "
                         f"{list(ARCHITECTURES)}.")

    return _micro_sam_util().sam_model_registry[architecture]()


def input_size(sam) -> int:
    """The side of the square image a SAM encoder takes (1024 for SAM, 256 for vit_mini)."""
    return int(sam.image_encoder.img_size)


def load_sam(architecture: str, checkpoint, device):
    """``(sam, state)``: SAM of `architecture` with the weights of `checkpoint`.

    micro_sam's four architectures go through ``micro_sam.util.get_sam_model``
    (a zoo name downloads into micro_sam's cache; ``state`` may hold the zoo
    model's ``decoder_state``). ``vit_mini`` needs a checkpoint, read with
    ``weights_only=True``.
    """
    if architecture_of(architecture) == TEST_ARCHITECTURE:
        if checkpoint is None:
            raise ValueError("the test architecture 'vit_mini' has no pretrained weights; "
                             "pass checkpoint=PATH (cellnb.models.random_checkpoint makes one).")
        from .._shared.torchutil import load_state

        state = dict(load_state(checkpoint))
        sam = _mini()
        sam.load_state_dict(state.get("model_state", state))
        return sam.to(device), state
    predictor, state = load_predictor(architecture, checkpoint, device)
    return predictor.model, state


def build_unetr(image_encoder, architecture: str, *, decoder_state=None, device="cpu"):
    """micro_sam's instance-segmentation decoder (torch_em ``UNETR``) on `image_encoder`.

    micro_sam's architectures get ``micro_sam.instance_segmentation.get_unetr``;
    ``vit_mini`` the same ``UNETR`` with the same arguments and a decoder four
    times narrower (``initial_features=16``: 16-128 channels instead of 64-512).
    """
    if architecture != TEST_ARCHITECTURE:
        from micro_sam.instance_segmentation import get_unetr

        return get_unetr(image_encoder, decoder_state=decoder_state, device=device)
    import warnings

    with warnings.catch_warnings():  # deprecation noise of torch_em's model dependencies
        warnings.simplefilter("ignore")
        from torch_em.model import UNETR

    unetr = UNETR(backbone="sam", encoder=image_encoder, out_channels=3, use_sam_stats=True,
                  final_activation="Sigmoid", use_skip_connection=False, resize_input=True,
                  use_conv_transpose=False, initial_features=16)
    if decoder_state is not None:
        state = unetr.state_dict()
        state.update({k: v for k, v in decoder_state.items() if not k.startswith("encoder")})
        unetr.load_state_dict(state)
    return unetr.to(device)


def load_predictor(architecture: str, checkpoint, device):
    """``(predictor, state)`` as ``micro_sam.util.get_sam_model(return_state=True)`` gives them.

    The predictor carries what micro_sam reads off one (``model_type``,
    ``model_name``, ``_hash``: the xxh128 of the file, ``checkpoint_path``).
    """
    if architecture_of(architecture) != TEST_ARCHITECTURE:
        import warnings

    
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.load notices inside micro_sam
            return _micro_sam_util().get_sam_model(model_type=architecture,
                                                   checkpoint_path=checkpoint, device=device,
                                                   return_state=True)
    from segment_anything import SamPredictor


    util = _micro_sam_util()
    sam, state = load_sam(architecture, checkpoint, util.get_device(device))
    predictor = SamPredictor(sam)
    predictor.model_type = TEST_ARCHITECTURE
    predictor.model_name = architecture
    predictor._hash = util._compute_hash(checkpoint)
    predictor.checkpoint_path = str(checkpoint)
    return predictor, state


def instance_decoder(image_encoder, architecture: str, decoder_state, device):
    """micro_sam's ``DecoderAdapter`` on the UNETR decoder of a checkpoint's ``decoder_state``."""
    from micro_sam.instance_segmentation import DecoderAdapter, get_decoder

    if architecture != TEST_ARCHITECTURE:
        return get_decoder(image_encoder, decoder_state, device=device)
    unetr = build_unetr(image_encoder, architecture, decoder_state=decoder_state, device=device)
    return DecoderAdapter(unetr)


# ---------------------------------------------------------------------------
# Cellpose-SAM
# ---------------------------------------------------------------------------
#: cellpose's network (CPSAM: SAM's ViT-L encoder, 8 px tokens) and its reduced test version.
CELLPOSE_ARCHITECTURES = ("cpsam", "cpsam_mini")
# CPSAM drops each of ViT-L's 24 blocks with a probability rising to 0.4 in training; over two
# blocks that drops half the network, and the reduced model does not learn (0.17 AP after 480
# steps): no layer drop here.
_CPSAM_MINI = {"embed_dim": 64, "depth": 2, "num_heads": 2, "out_chans": 64, "rdrop": 0.0}


def _reduced_cpsam_class():
    """cellpose's ``CPSAM`` on a two-block 64-wide ViT: forward, readout and loss unchanged."""
    import torch
    from cellpose.vit import CPSAM, BaseModel
    from segment_anything.modeling import ImageEncoderViT

    class ReducedCPSAM(CPSAM):
        """``CPSAM`` (same forward: 8 px tokens, global attention, 1x1 readout of 3 x 8 x 8
        values per token unfolded to pixels) on a reduced encoder, built without ViT-L."""

        def __init__(self, ps=8, nout=3, bsize=256, rdrop=0.4, dtype=torch.float32):
            BaseModel.__init__(self, dtype=dtype)
            c = _CPSAM_MINI
            self.rdrop = rdrop
            self.backbone = "sam_vitl"  # what cellpose's eval keys its tiling on (bsize 256)
            self.encoder = ImageEncoderViT(
                img_size=bsize, patch_size=ps, embed_dim=c["embed_dim"], depth=c["depth"],
                num_heads=c["num_heads"], mlp_ratio=4, qkv_bias=True, use_rel_pos=True,
                global_attn_indexes=tuple(range(c["depth"])), window_size=0,
                out_chans=c["out_chans"]).to(dtype)
            self.out = torch.nn.Conv2d(c["out_chans"], nout * ps ** 2, kernel_size=1)
            self.W2 = torch.nn.Parameter(torch.eye(nout * ps ** 2).reshape(nout * ps ** 2, nout,
                                                                          ps, ps),
                                         requires_grad=False)
            self.nout, self.ps = nout, ps

    return ReducedCPSAM


def build_cellpose_net(architecture: str, device="cpu"):
    """cellpose's network of `architecture` ("cpsam", or the reduced "cpsam_mini"), random init."""
    import torch

    if architecture == "cpsam":
        from cellpose.vit import CPSAM

        return CPSAM(dtype=torch.float32).to(device)
    if architecture == "cpsam_mini":
        return _reduced_cpsam_class()(dtype=torch.float32, rdrop=_CPSAM_MINI["rdrop"]).to(device)
    raise ValueError(f"unknown cellpose architecture {architecture!r}; choose one of "
                     f"{list(CELLPOSE_ARCHITECTURES)}.")


def cellpose_model(architecture: str, path, device):
    """A ``cellpose.models.CellposeModel`` holding the weights of `path`.

    ``cpsam`` (and cellpose's own names) through ``CellposeModel(pretrained_model=path)``;
    ``cpsam_mini`` is built here and handed to a ``CellposeModel`` whose
    construction skips building ViT-L (everything else, ``eval`` included,
    is cellpose's).
    """
    import torch
    from cellpose import models

    device = torch.device(device)
    if architecture != "cpsam_mini":
        return models.CellposeModel(pretrained_model=str(path), device=device,
                                    use_bfloat16=False)

    class _Model(models.CellposeModel):
        def __init__(self, net):  # what CellposeModel.__init__ sets, with `net` given
            self.device, self.gpu = device, device.type == "cuda"
            self.pretrained_model = str(path)
            self.backbone = net.backbone
            self.net = net

    net = build_cellpose_net(architecture, device)
    net.load_model(str(path), device=device)
    return _Model(net)


def _micro_sam_util():
    """Import micro_sam.util, silencing the deprecation noise of its dependencies."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import micro_sam.util as util
    return util
