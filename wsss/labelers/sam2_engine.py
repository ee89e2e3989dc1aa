"""One SAM2 model per process: image embeddings computed once, decoded for any prompt kind.

``Sam2Engine`` wraps sam2's ``SAM2ImagePredictor``: ``embed`` runs the (expensive) image
encoder on a batch and ``predict`` runs the (cheap) mask decoder for one prompt per image;
``predict_proposals`` decodes many single-point prompts per image (one proposal each).
``embed`` remembers the last batch it encoded, so labelers that share an engine and see the
same images (centre point, CAM peaks, CAM box) pay for one encoder pass. Engines live in a
per-process cache (one per Ray actor), keyed by model, checkpoint, device and random seed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from wsss.identity import file_hash
from wsss.labelers.base import LabelerContext
from wsss.models.classifier import WeightsMissingError

# Model name -> the short name of its sam2.1 Hydra config inside the sam2 package.
SAM2_CONFIGS: dict[str, str] = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
CHECKPOINT_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_{model}.pt"


def config_name(model: str) -> str:
    """The sam2 Hydra config of a model size, e.g. configs/sam2.1/sam2.1_hiera_s.yaml."""
    return f"configs/sam2.1/sam2.1_hiera_{SAM2_CONFIGS[model]}.yaml"


def resolve_checkpoint(model: str, checkpoint: str | None, context: LabelerContext) -> str | None:
    """The checkpoint file to load, or None for random weights (only when the context allows).

    An explicit ``checkpoint`` must exist. Without one, ``<models_dir>/sam2.1_hiera_<model>.pt``
    is used when present; when absent, random weights if allowed, else WeightsMissingError.
    """
    path = Path(checkpoint) if checkpoint else Path(context.models_dir) / f"sam2.1_hiera_{model}.pt"
    if path.is_file():
        return str(path)
    if checkpoint is None and context.allow_random_weights:
        return None
    raise WeightsMissingError(
        f"SAM2 checkpoint {path} not found: download {CHECKPOINT_URL.format(model=model)} "
        f"and put it at {path} (the default place is <models_dir>/sam2.1_hiera_{model}.pt, "
        f"models_dir={context.models_dir!r}; or set params.checkpoint to its path)")


@lru_cache(maxsize=16)
def _cached_file_hash(path: str, size: int, mtime_ns: int) -> str:
    return file_hash(path)


def checkpoint_hash(path: str) -> str:
    """file_hash of a checkpoint, computed once per file version (they are ~100-900 MB)."""
    stat = os.stat(path)
    return _cached_file_hash(os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


def _images_digest(images: list[np.ndarray]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for image in images:
        digest.update(repr((image.shape, image.dtype.str)).encode())
        digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()


@dataclass(frozen=True)
class EngineKey:
    model: str
    checkpoint: str | None  # None: random weights, drawn from ``seed``
    device: str
    seed: int
    image_size: int = 1024
    precision: str = "bf16"  # autocast dtype on CUDA; the CPU always runs fp32


class Sam2Engine:
    """A SAM2 model and image predictor, built on first use; see the module docstring."""

    def __init__(self, key: EngineKey):
        self.key = key
        self.encoder_calls = 0  # batches actually encoded (a cache hit does not count)
        self._predictor: Any = None
        self._embedded: str | None = None

    @property
    def predictor(self) -> Any:
        """sam2's SAM2ImagePredictor, building the model the first time."""
        if self._predictor is None:
            from sam2.sam2_image_predictor import SAM2ImagePredictor

            self._predictor = SAM2ImagePredictor(self._build_model())
            size = self.key.image_size  # the predictor assumes 1024: feature sizes follow the input
            self._predictor._bb_feat_sizes = [(size // 4, size // 4), (size // 8, size // 8),
                                              (size // 16, size // 16)]
        return self._predictor

    def _build_model(self) -> Any:
        import sam2  # noqa: F401  (its import points Hydra at sam2's configs)
        import torch
        from hydra import initialize_config_module
        from hydra.core.global_hydra import GlobalHydra
        from sam2.build_sam import build_sam2

        # Something may have cleared Hydra since sam2 was imported; initialising twice raises.
        if not GlobalHydra.instance().is_initialized():
            initialize_config_module("sam2", version_base="1.2")
        # Forked RNG: random weights depend on the seed only, and callers' RNG is untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.key.seed)
            return build_sam2(config_name(self.key.model), self.key.checkpoint, device=self.key.device,
                              hydra_overrides_extra=[f"++model.image_size={self.key.image_size}"])

    def _precision(self) -> Any:
        import contextlib

        import torch

        if self.key.device.startswith("cuda") and self.key.precision == "bf16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def embed(self, images: np.ndarray | list[np.ndarray]) -> None:
        """Encode a batch of HxWx3 uint8 RGB images (skipped when it is the last batch encoded)."""
        import torch

        image_list = [np.ascontiguousarray(image, dtype=np.uint8) for image in images]
        digest = _images_digest(image_list)
        if digest == self._embedded:
            return
        _ = self.predictor  # builds the model on first use
        self._embedded = None  # a failed encode must not leave a stale digest behind
        with torch.inference_mode(), self._precision():
            self._set_image_batch_on_device(image_list)
        self.encoder_calls += 1
        self._embedded = digest

    def _set_image_batch_on_device(self, image_list: list[np.ndarray]) -> None:
        """``SAM2ImagePredictor.set_image_batch`` with resize and normalisation on the device.

        sam2 converts, resizes and normalises each image on the CPU, one at a time, before the
        encoder; here the same steps run where the model is, as one tensor op for a batch of
        equal-sized images and one resize per image otherwise (images at their own sizes), then
        one normalisation of the stacked batch (measured 2.9x faster for the encoder on an
        H100). The rest follows sam2's method step for step.
        """
        import torch
        import torch.nn.functional as functional

        predictor, model = self.predictor, self.predictor.model
        predictor.reset_predictor()
        predictor._orig_hw = [image.shape[:2] for image in image_list]
        size = predictor._transforms.resolution

        def resized(pixels):
            batch = pixels.permute(0, 3, 1, 2).float().div_(255.0)
            return functional.interpolate(batch, size=(size, size), mode="bilinear",
                                          align_corners=False, antialias=True)

        if len({image.shape for image in image_list}) == 1:
            batch = resized(torch.as_tensor(np.stack(image_list), device=predictor.device))
        else:
            batch = torch.cat([resized(torch.as_tensor(image[None], device=predictor.device))
                               for image in image_list])
        mean = torch.tensor(predictor._transforms.mean, device=batch.device).view(1, 3, 1, 1)
        std = torch.tensor(predictor._transforms.std, device=batch.device).view(1, 3, 1, 1)
        backbone_out = model.forward_image((batch - mean) / std)
        _, vision_feats, _, _ = model._prepare_backbone_features(backbone_out)
        if model.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
        feats = [feat.permute(1, 2, 0).reshape(len(image_list), -1, *feat_size)
                 for feat, feat_size in zip(vision_feats[::-1], predictor._bb_feat_sizes[::-1])][::-1]
        predictor._features = {"image_embed": feats[-1], "high_res_feats": feats[:-1]}
        predictor._is_image_set = True
        predictor._is_batch = True

    def predict(self, points: list[np.ndarray | None], boxes: list[np.ndarray | None] | None,
                multimask: bool, mask_inputs: list[np.ndarray | None] | None = None
                ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Masks (C x H x W bool) and predicted IoUs (C) per embedded image.

        ``points[i]`` is K x 3 [x, y, label] (label 1 positive, 0 negative) or None;
        ``boxes[i]`` is [x0, y0, x1, y1] or None. Coordinates are pixels of the image.
        ``mask_inputs[i]`` (optional) is SAM2's low-resolution mask prompt, 1 x s x s logits with
        s = image_size / 4 (the prompt encoder's ``mask_input_size``), in the encoder's square
        frame whatever the image's aspect.
        """
        import torch

        if self._embedded is None:
            raise RuntimeError("Sam2Engine.predict before embed: no image batch is encoded")
        coords = [None if p is None else p[:, :2].astype(np.float32) for p in points]
        labels = [None if p is None else p[:, 2].astype(np.int32) for p in points]
        with torch.inference_mode(), self._precision():
            masks, scores, _ = self.predictor.predict_batch(
                coords, labels, boxes, mask_inputs, multimask_output=multimask)
        return [m > 0.5 for m in masks], [np.atleast_1d(s) for s in scores]

    def predict_proposals(self, points: list[np.ndarray], multimask: bool, chunk: int = 64
                          ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Every embedded image's P_i single-point proposals, each decoded on its own.

        ``points[i]`` is P_i x 2 [x, y] positive points in the pixels of image i. Returns per
        image masks P_i x C x H x W bool and predicted IoUs P_i x C (C = 3 with ``multimask``).
        sam2's ``predict``/``predict_batch`` read P x 1 x 2 points as P separate prompts and
        decode them in one mask-decoder pass (the image embedding repeated), one image at a
        time, returning float32 masks; its ``_predict`` (which they call) returns them bool, a
        quarter of the memory. ``chunk`` proposals per pass bound the decoder's memory.
        """
        import torch

        if self._embedded is None:
            raise RuntimeError("Sam2Engine.predict_proposals before embed: no image batch is encoded")
        predictor, candidates = self.predictor, 3 if multimask else 1
        if len(points) != len(predictor._orig_hw):
            raise ValueError(f"{len(points)} point sets for {len(predictor._orig_hw)} embedded images")
        all_masks, all_scores = [], []
        with torch.inference_mode(), self._precision():
            for index, image_points in enumerate(points):
                masks = [np.zeros((0, candidates, *predictor._orig_hw[index]), bool)]
                scores = [np.zeros((0, candidates), np.float32)]
                for start in range(0, len(image_points), chunk):
                    coords = np.asarray(image_points[start:start + chunk], np.float32)[:, None, :2]
                    _, scaled, labels, _ = predictor._prep_prompts(
                        coords, np.ones(coords.shape[:2], np.int32), None, None, True, img_idx=index)
                    found, iou, _ = predictor._predict(scaled, labels, None, None, multimask, img_idx=index)
                    masks.append(found.cpu().numpy())
                    scores.append(iou.float().cpu().numpy())
                all_masks.append(np.concatenate(masks))
                all_scores.append(np.concatenate(scores))
        return all_masks, all_scores


_ENGINES: dict[EngineKey, Sam2Engine] = {}


def get_engine(key: EngineKey) -> Sam2Engine:
    """The process-wide engine for ``key`` (one per Ray actor); created, not yet built."""
    if key not in _ENGINES:
        _ENGINES[key] = Sam2Engine(key)
    return _ENGINES[key]


def release_engines() -> None:
    """Drop every cached engine (their models are freed with the last reference)."""
    _ENGINES.clear()
