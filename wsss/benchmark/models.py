"""Model stages of the benchmark: CAM / Grad-CAM / Grad-CAM++, SAM2, segmentation inference.

Each measures the project's path (batched, on the device, bf16 where the project uses it)
against the plain reference the study's scripts use (pytorch-grad-cam at batch size 1; SAM2's
image predictor one image at a time with ``set_image``; one image per forward).
Segmentation training lives in ``wsss.benchmark.train``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wsss.benchmark.common import Settings, Workload, chunks, fast_path, rate, stage_result, timed
from wsss.benchmark.train import train_arrays
from wsss.data.transforms import to_input_tensor
from wsss.labelers.base import LabelerContext
from wsss.labelers.fastcam import BF16_ON_CUDA, CamEngine
from wsss.labelers.registry import reference_cam_methods
from wsss.labelers.sam2 import centre_point
from wsss.labelers.sam2_engine import EngineKey, Sam2Engine
from wsss.masks.stages import HeatmapStage
from wsss.models.classifier import build_classifier, save_classifier
from wsss.models.segmentation import create_model
from wsss.train.steps import predict_logits

UNIT = {"cpu": "per core", "cuda": "per GPU"}  # on CPU the benchmark runs one thread


def unit_of(device: str) -> str:
    return UNIT["cuda" if device.startswith("cuda") else "cpu"]


# ---- CAMs -----------------------------------------------------------------------------------


def classifier_checkpoint(scratch: Path, settings: Settings, size: int | None = None) -> Path:
    """A random-init classifier checkpoint at ``size`` (default the benchmark's), made once."""
    import torch

    size = size or settings.size
    path = scratch / f"classifier-{settings.cam_backbone}-{size}.pt"
    if not path.is_file():
        torch.manual_seed(settings.seed)
        save_classifier(build_classifier(settings.cam_backbone, "none"), path,
                        settings.cam_backbone, image_size=size)
    return path


def classifier_context(work: Workload, settings: Settings) -> Any:
    """A random-init classifier checkpoint at the benchmark's size, and the labelers' context."""
    return LabelerContext(classifier_checkpoint=str(classifier_checkpoint(work.scratch, settings)),
                          device=settings.device, allow_random_weights=True, seed=settings.seed)


def _batches(work: Workload, count: int, size: int) -> list[dict[str, np.ndarray]]:
    rows = work.rows(count)
    return [{key: values[part] for key, values in rows.items()} for part in chunks(len(rows["image"]), size)]


def _noise_like(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A warm-up batch of the same shape that no cache mistakes for a measured one."""
    images = np.random.default_rng(1).integers(0, 256, batch["image"].shape, np.uint8)
    return {**batch, "image": images}


def _reference_maps(cam: Any, images: np.ndarray, labels: np.ndarray, device: str) -> list:
    """pytorch-grad-cam one image at a time, input requiring grad (the labelers' old path)."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    maps = []
    for image, label in zip(images, labels):
        tensor = to_input_tensor(image[None], device).requires_grad_(True)
        maps.append(cam(input_tensor=tensor, targets=[ClassifierOutputTarget(int(label))])[0])
    return maps


def _heatmap_stage(methods: tuple[str, ...], context: Any) -> Any:
    return HeatmapStage([{"method": method, "target": "labelled"} for method in methods], context)


def cam_stage(method: str, work: Workload, settings: Settings) -> dict[str, Any]:
    """The pipeline's heatmap stage for one method (fast engine, batched) against
    pytorch-grad-cam at batch size 1; the maps of both compared (max abs diff)."""
    device = settings.device
    batches = _batches(work, settings.model_images, settings.cam_batch)
    count = sum(len(b["image"]) for b in batches)
    stage = _heatmap_stage((method,), classifier_context(work, settings))
    stage(_noise_like(batches[0]))  # warm-up: first kernels
    path_seconds = timed(lambda: [stage(b) for b in batches], device)
    labeler = next(iter(stage.labelers.values()))
    images, labels = work.images[:count], work.labels[:count]
    fast = np.concatenate([labeler.heatmaps(b["image"], b["label"]) for b in batches])
    cam = labeler.reference_cam()
    _reference_maps(cam, images[:1], labels[:1], device)  # warm-up
    reference: list = []
    reference_seconds = timed(lambda: reference.extend(_reference_maps(cam, images, labels, device)), device)
    bf16 = BF16_ON_CUDA and device.startswith("cuda")
    details = {"batch": settings.cam_batch, "backbone": settings.cam_backbone, "bf16": bf16,
               "max_abs_diff_vs_pytorch_grad_cam": float(np.abs(fast - np.stack(reference)).max())}
    if device.startswith("cuda"):
        details["max_abs_diff_vs_pytorch_grad_cam_no_tf32"] = _diff_without_tf32(
            labeler, cam, batches[0], method, device)
    cam.activations_and_grads.release()
    labeler.close()
    return stage_result(method, f"HeatmapStage (fastcam), batch {settings.cam_batch}{' bf16' if bf16 else ''}",
                        "pytorch-grad-cam, batch 1", rate(count, path_seconds),
                        rate(count, reference_seconds), unit=unit_of(device), images=count,
                        details=details)


def _diff_without_tf32(labeler: Any, cam: Any, batch: dict, method: str, device: str) -> float:
    """Max abs diff of engine and reference maps with TF32 off: on a GPU both run their
    convolutions in TF32 by default, whose rounding differs with the batch size."""
    import torch

    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        engine = labeler._cam.engine
        fast = engine.heatmaps(batch["image"], batch["label"], [(method, "labelled")])
        reference = np.stack(_reference_maps(cam, batch["image"], batch["label"], device))
        return float(np.abs(next(iter(fast.values())) - reference).max())
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


def cam_fast_paths(work: Workload, settings: Settings, results: dict[str, dict]) -> list[dict]:
    """All three maps in one shared pass (one HeatmapStage) against three single-method stages
    and the references; on CUDA also bf16 against fp32 (speed, max abs diff, mask agreement)."""
    device, context = settings.device, classifier_context(work, settings)
    batches = _batches(work, settings.model_images, settings.cam_batch)
    count = sum(len(b["image"]) for b in batches)
    stage = _heatmap_stage(reference_cam_methods(), context)
    stage(_noise_like(batches[0]))  # warm-up
    shared = timed(lambda: [stage(b) for b in batches], device)
    single = sum(count / results[m]["path_images_per_s"] for m in reference_cam_methods())
    reference = sum(count / results[m]["reference_images_per_s"] for m in reference_cam_methods())
    gpu = device.startswith("cuda")
    out = [
        fast_path("three CAM kinds in one pass vs three single-kind passes", 1.5 if gpu else 2.5,
                  single / shared, "one classifier forward instead of three; the per-kind map "
                  "copy back and float16 column stay per kind",
                  three_kinds_images_per_s=rate(count, shared)),
        fast_path("three CAM kinds in one pass vs pytorch-grad-cam x3 at batch 1", 40 if gpu else 8,
                  reference / shared, "reference: 3 x (forward + backward to the input) per image"
                  "; fast: 1 forward + head-only backward per batch")]
    labeler = next(iter(stage.labelers.values()))
    if gpu:
        out.append(_bf16_cams(labeler, batches, device))
    labeler.close()
    return out


def _bf16_cams(labeler: Any, batches: list[dict], device: str) -> dict[str, Any]:
    """The engine in bf16 autocast against fp32 on the same batches (all three kinds)."""
    kinds = [(method, "labelled") for method in reference_cam_methods()] + [("gradcam", "predicted")]
    results, seconds = {}, {}
    for bf16 in (False, True):
        engine = CamEngine(labeler._model, labeler._layer, labeler._head, device, bf16=bf16)
        engine.heatmaps(_noise_like(batches[0])["image"], batches[0]["label"], kinds)  # warm-up
        maps: list = []
        seconds[bf16] = timed(lambda: maps.append(  # noqa: B023 (called at once, in this iteration)
            [engine.heatmaps(b["image"], b["label"], kinds) for b in batches]), device)  # noqa: B023
        results[bf16] = {key: np.concatenate([m[key] for m in maps[0]]) for key in maps[0][0]}
        engine.close()
    diffs = {k: float(np.abs(results[True][k] - results[False][k]).max()) for k in results[True]}
    ious = {}
    for key in results[True]:
        low, high = results[True][key] >= 0.5, results[False][key] >= 0.5
        ious[key] = float((low & high).sum() / max((low | high).sum(), 1))
    worst = max(diffs.values())
    count = sum(len(b["image"]) for b in batches)
    return fast_path("CAM engine bf16 autocast vs fp32 (GPU)", 1.5, seconds[False] / seconds[True],
                     "bf16 tensor cores vs TF32 convolutions; the map math stays fp32",
                     kept=worst <= 0.02 and min(ious.values()) >= 0.99,
                     max_abs_diff=diffs, mask_iou_at_0_5=ious,
                     engine_images_per_s_fp32=rate(count, seconds[False]),
                     engine_images_per_s_bf16=rate(count, seconds[True]))


# ---- SAM2 -----------------------------------------------------------------------------------


def sam2_stage(work: Workload, settings: Settings) -> dict[str, Any]:
    """Sam2Engine (batched set_image_batch, bf16 on CUDA) + centre-point decode against the
    image predictor one image at a time in fp32 (set_image + predict)."""
    import torch
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    device = settings.device
    count = min(settings.sam2_images, len(work.image_ids))
    images = [np.ascontiguousarray(image) for image in work.images[:count]]
    point = centre_point(*images[0].shape[:2])
    engine = Sam2Engine(EngineKey(settings.sam2_model, None, device, settings.seed,
                                  image_size=settings.sam2_image_size))
    noise = np.random.default_rng(1).integers(0, 256, (min(settings.sam2_batch, count), *images[0].shape), np.uint8)
    engine.embed(noise)  # warm-up (and builds the model)
    engine.predict([point] * len(noise), None, True)
    parts = chunks(count, settings.sam2_batch)
    path = _split_seconds([(lambda p=p: engine.embed(images[p]),
                            lambda p=p: engine.predict([point] * len(images[p]), None, True))
                           for p in parts], device)
    predictor = SAM2ImagePredictor(engine.predictor.model)
    predictor._bb_feat_sizes = engine.predictor._bb_feat_sizes  # as the engine's input side

    def encode(image: np.ndarray) -> None:
        with torch.inference_mode():
            predictor.set_image(image)

    def decode() -> None:
        with torch.inference_mode():
            predictor.predict(point_coords=point[:, :2], point_labels=point[:, 2].astype(int),
                              multimask_output=True)

    if device.startswith("cuda"):
        encode(images[0]), decode()  # warm-up of the fp32 kernels (on CPU the model is warm)
    reference = _split_seconds([(lambda i=i: encode(i), decode) for i in images], device)
    encode_seconds, path_seconds = path[0], sum(path)
    reference_encode, reference_seconds = reference[0], sum(reference)
    details = {"model": settings.sam2_model, "batch": settings.sam2_batch,
               "image_size": settings.sam2_image_size,
               "bf16": device.startswith("cuda"),
               "encoder_images_per_s_path": rate(count, encode_seconds),
               "encoder_images_per_s_reference": rate(count, reference_encode)}
    fast = [fast_path("SAM2 encoder batched (+bf16 on GPU) vs one image at a time fp32",
                      3.0 if device.startswith("cuda") else 1.1,
                      reference_encode / encode_seconds,
                      "GPU: bf16 tensor cores ~2x, batching fills the GPU; CPU: batching alone "
                      "gains little at 1024 px")]
    if device.startswith("cuda"):
        fast += _sam2_gpu_encoder(engine.predictor.model, work.images[:count], settings, details)
    return {**stage_result("sam2", f"Sam2Engine batch {settings.sam2_batch}"
                           f"{' bf16' if device.startswith('cuda') else ''} + decode",
                           "SAM2ImagePredictor set_image + predict, 1 image, fp32",
                           rate(count, path_seconds), rate(count, reference_seconds),
                           unit=unit_of(device), images=count, details=details),
            "fast_paths": fast}


def _split_seconds(steps: list[tuple], device: str) -> tuple[float, float]:
    """Total seconds of the first and of the second callable of each (encode, decode) pair."""
    totals = [0.0, 0.0]
    for pair in steps:
        for index, call in enumerate(pair):
            totals[index] += timed(call, device)
    return totals[0], totals[1]


def _sam2_gpu_encoder(model: Any, images: np.ndarray, settings: Settings, details: dict) -> list[dict]:
    """Encoder only, preprocessing on the GPU (uint8 in), bf16; then with torch.compile."""
    import time

    import torch
    import torch.nn.functional as F

    device, side = settings.device, model.image_size
    pixels = torch.as_tensor(images).to(device)
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
    batch = max(settings.sam2_batch, 32)

    def run(encode) -> None:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            for part in chunks(len(pixels), batch):
                x = pixels[part].permute(0, 3, 1, 2).float().div_(255.0)
                x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
                encode((x - mean) / std)

    run(model.forward_image)
    eager = timed(lambda: run(model.forward_image), device)
    details["encoder_images_per_s_gpu_preprocessing"] = rate(len(pixels), eager)
    out = [fast_path("SAM2 preprocessing on the GPU vs sam2's CPU transforms (encoder, bf16)", 2.0,
                     details["encoder_images_per_s_gpu_preprocessing"] / details["encoder_images_per_s_path"],
                     "sam2's set_image_batch resizes each image to 1024 px on the CPU, one by one")]
    if settings.sam2_compile:
        compiled = torch.compile(model.forward_image)
        started = time.perf_counter()
        run(compiled)
        compile_seconds = time.perf_counter() - started
        seconds = timed(lambda: run(compiled), device)
        details["encoder_images_per_s_compiled"] = rate(len(pixels), seconds)
        out.append(fast_path("SAM2 encoder torch.compile vs eager (GPU preprocessing, bf16)", 1.2,
                             eager / seconds, "fuses Hiera's norms and attention glue; matmuls unchanged",
                             kept=eager / seconds > 1.05, compile_seconds=compile_seconds))
    return out


# ---- segmentation inference -----------------------------------------------------------------


def infer_stage(work: Workload, settings: Settings) -> dict[str, Any]:
    """Batched prediction (bf16 + channels_last on CUDA) against one image per forward, fp32."""
    import torch

    device = settings.device
    cuda = device.startswith("cuda")
    images, _ = train_arrays(work, settings)
    images = torch.as_tensor(images[: settings.model_images])
    torch.manual_seed(settings.seed)
    model = create_model(settings.train_model, "none", **settings.train_options).to(device).eval()
    one = lambda: [predict_logits(model, images[i:i + 1], device) for i in range(len(images))]  # noqa: E731
    one()
    reference_seconds = timed(one, device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    batch = settings.train_batch
    many = lambda: [predict_logits(model, images[p], device, bf16=cuda, channels_last=cuda)  # noqa: E731
                    for p in chunks(len(images), batch)]
    many()
    path_seconds = timed(many, device)
    return stage_result("infer", f"batch {batch}{' bf16 channels_last' if cuda else ''}",
                        "1 image per forward, fp32", rate(len(images), path_seconds),
                        rate(len(images), reference_seconds), unit=unit_of(device),
                        images=len(images), details={"model": settings.train_model,
                                                     "image_size": settings.train_size})
