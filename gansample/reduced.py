"""Reduced-precision generators for the CPU: an int8 variant and the quality gate it must pass.

``make_int8`` writes ``generator_int8.onnx`` from a model's uint8 variant (fp32 compute,
uint8 NHWC out) with onnxruntime's static QDQ quantisation: weights int8 per output
channel, activations uint8 calibrated (percentile) on latents and labels drawn by the seed
rule. Only the convolutions and their ReLUs are quantised. The first layer (z and the
class embedding -> the first feature map, a Gemm) and everything after the last
convolution (the output layer, tanh, the uint8 conversion) stay in fp32: quantising the
first layer alone moves pixels by about 11/255 on average, the rest by under 1/255.

``gate`` measures the variant against fp32 on the same seeds: pixel differences over
1,000 seeds, and the Fréchet distance and k-NN recall of its samples in a features
model's space. The variant may be worse than fp32 on the same seeds by at most fp32's own
spread over disjoint seed sets (its noise band), on each figure. The reference
distribution is fp32's own samples from yet another seed set, so the gate needs no
dataset, only a features model for the images. The result is stored in the variant's
metadata (``gate``); the runtime picks the variant automatically only when it passed
(and measured faster on the CPU it runs on, see ``gansample.variants``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import latents as lat
from . import metadata as md
from .errors import GansampleError, bad_value, check_count, first_line
from .files import atomic_write, temp_dir
from .generator import Generator
from .registry import GENERATOR_FILES
from .session import Session

log = logging.getLogger("gansample")
INT8_FILE, UINT8_FILE = GENERATOR_FILES["int8"], GENERATOR_FILES["uint8"]
CALIB_SEEDS = range(3_000_000, 3_001_024)  # 1,024 latents, away from every seed set of the gate
# onnxruntime's percentile calibration keeps every calibrated activation of every latent in
# memory at once (7.8 GB for 1,024 latents of a 64 px, width-64 generator; four times that at
# 128 px): larger models calibrate on fewer latents, multiples of 64, at least 128.
CALIB_BUDGET_BYTES = 1 << 30  # a target for the recorded activations, not a bound on the process
MIN_CALIB = 128
GATE_SEEDS = 1000  # seeds per set: set 0 (0..999) is compared pixel by pixel
GATE_SETS = 4  # disjoint fp32 sets whose spread is the noise band
REFERENCE_SEEDS = range(2_000_000, 2_002_000)  # the fp32 samples every set is compared with
MAX_MEAN_PIXEL_DIFF = 2.0  # of 255: the gate's bound on the mean |int8 - fp32| pixel difference
QUANTISED_OPS = ["Conv", "Relu"]


def _feeds(sess: Session, info: md.ModelInfo, seeds: list[int]) -> dict[str, np.ndarray]:
    """The graph's inputs for ``seeds`` by the seed rule, untruncated (psi 1): the
    quantiser's calibration data."""
    feeds: dict[str, np.ndarray] = {"z": lat.latents_for_seeds(seeds, info.z_dim)}
    if "label" in sess.input_names:
        feeds["label"] = lat.labels_for_seeds(seeds, max(info.num_classes, 1))
    if "psi" in sess.input_names:
        feeds["psi"] = np.ones(len(seeds), np.float32)
    return feeds


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def calibration_count(path: Path) -> int:
    """How many of CALIB_SEEDS to calibrate on: all of them unless the float activations
    the calibrator records (inputs and outputs of the quantised ops; estimated from the
    graph's inferred shapes) would pass CALIB_BUDGET_BYTES. A graph whose activation sizes
    cannot be inferred gets the fewest."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {vi.name: vi.type.tensor_type for vi in (*model.graph.value_info, *model.graph.output)}
    skip = {i.name for i in model.graph.initializer} | {i.name for i in model.graph.input}
    recorded = {name for node in model.graph.node if node.op_type in QUANTISED_OPS
                for name in (*node.input, *node.output) if name and name not in skip}
    per_latent = 0
    for name in recorded:
        t = shapes.get(name)
        if t is None:
            return MIN_CALIB
        if t.elem_type != onnx.TensorProto.FLOAT:
            continue
        dims = [d.dim_value for d in t.shape.dim][1:]
        if not dims or not all(d > 0 for d in dims):
            return MIN_CALIB
        per_latent += int(np.prod(dims)) * 4
    fit = CALIB_BUDGET_BYTES // max(per_latent, 1) // 64 * 64
    return int(min(len(CALIB_SEEDS), max(MIN_CALIB, fit)))


def make_int8(uint8_path: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Quantise the uint8 variant at ``uint8_path`` into ``out`` (metadata: variant int8,
    no gate yet). Raises GansampleError when onnxruntime cannot quantise the graph."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src = Path(uint8_path)
    if not any(n.op_type == "Conv" for n in onnx.load(str(src)).graph.node):
        # Transposed convolutions stay float in onnxruntime's CPU int8 path: Q/DQ pairs
        # around them would only add work.
        raise GansampleError(f"int8: {src.name} has no Conv nodes to quantise (only Conv and Relu are); "
                             "re-export it through gansample's exporter for the phase-conv graph", "int8")
    sess = Session(src, "cpu")
    info = sess.info

    class Reader(CalibrationDataReader):
        def __init__(self, count: int) -> None:
            self.it = (_feeds(sess, info, chunk) for chunk in lat.chunks(CALIB_SEEDS[:count], 64))

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    # The quantiser prints its progress and logs advice on the root logger: kept quiet.
    with tempfile.TemporaryDirectory(prefix="gansample-int8-") as tmp, \
            contextlib.redirect_stdout(io.StringIO()), _quiet_logging():
        pre, q = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(q), Reader(calibration_count(pre)), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=QUANTISED_OPS, per_channel=True, reduce_range=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.Percentile,
                            extra_options={"CalibTensorRangeSymmetric": False})
        except Exception as e:  # onnxruntime's quantiser raises many kinds for graphs it cannot handle
            raise GansampleError(f"int8: onnxruntime could not quantise {src.name} ({first_line(e, 300)})",
                                 "int8") from None
        model = onnx.load(str(q))
    md.write(model, md.ModelInfo(**{**info.__dict__, "variant": "int8", "gate": {}}))
    atomic_write(out, model.SerializeToString())
    return Path(out)


def _sampler(path: str | os.PathLike[str]) -> Generator:
    """The generator file at ``path`` on the CPU; ``.sample(seeds=...)`` gives the images
    of the seeds by the seed rule, untruncated."""
    return Generator(path, device="cpu", batch_size=250)


def gate(fp32_uint8: str | os.PathLike[str], variant: str | os.PathLike[str],
         features: str | os.PathLike[str] | None, seeds: int = GATE_SEEDS) -> dict[str, Any]:
    """Measure the ``variant`` file against the fp32 model (its uint8-output file); see
    ``judge``."""
    seeds = check_count("seeds", seeds, 10, 100_000)
    return judge(fp32_uint8, _sampler(variant).sample(seeds=range(seeds)).images, features, seeds)


def judge(fp32_uint8: str | os.PathLike[str], images: np.ndarray,
          features: str | os.PathLike[str] | None, seeds: int = GATE_SEEDS) -> dict[str, Any]:
    """The gate's record for ``images`` (uint8 NHWC, seeds 0..seeds-1 by the seed
    rule, untruncated: made by any reduced-precision path, e.g. torch's bf16 autocast)
    against the fp32 model: pixel differences, and with a ``features`` model the Fréchet
    distance and recall of both against fp32 reference samples, with fp32's band over
    ``GATE_SETS`` disjoint sets of ``seeds`` seeds (the reference: twice as many).
    ``passed`` is True only when every figure is within bounds."""
    from .metrics import FeatureExtractor, frechet_distance, precision_recall

    seeds = check_count("seeds", seeds, 10, 100_000)
    fp32 = _sampler(fp32_uint8)
    sets = [range(k * seeds, (k + 1) * seeds) for k in range(GATE_SETS)]
    reference = range(REFERENCE_SEEDS.start, REFERENCE_SEEDS.start + 2 * seeds)
    fp = fp32.sample(seeds=sets[0]).images
    if images.shape != fp.shape or images.dtype != np.uint8:
        raise GansampleError(f"images: got {images.dtype} {list(images.shape)}; uint8 {list(fp.shape)} "
                             f"(seeds 0-{seeds - 1})", "images")
    diff = np.abs(fp.astype(np.int16) - images.astype(np.int16))
    rec: dict[str, Any] = {"seeds": seeds, "max_pixel_diff": int(diff.max()),
                           "mean_pixel_diff": round(float(diff.mean()), 4),
                           "p99_pixel_diff": float(np.percentile(diff, 99)),
                           "bound_mean_pixel_diff": MAX_MEAN_PIXEL_DIFF}
    reasons = []
    if rec["mean_pixel_diff"] > MAX_MEAN_PIXEL_DIFF:
        reasons.append(f"mean pixel difference {rec['mean_pixel_diff']:.2f} > {MAX_MEAN_PIXEL_DIFF}")
    if features is None:
        reasons.append("no features model to measure Fréchet distance and recall (pass features)")
    else:
        fx = FeatureExtractor(features, device="cpu")
        ref = fx(fp32.sample(seeds=reference).images)[0]
        fds, recalls = [], []
        for k, s in enumerate(sets):
            f = fx(fp if k == 0 else fp32.sample(seeds=s).images)[0]
            fds.append(frechet_distance(ref, f))
            recalls.append(precision_recall(ref, f)[1])
        fv = fx(images)[0]
        fd_v, rec_v = frechet_distance(ref, fv), precision_recall(ref, fv)[1]
        rec.update({"features": Path(features).name, "reference_seeds": f"{reference.start}-{reference.stop - 1}",
                    "fd": round(fd_v, 5), "fd_fp32": round(fds[0], 5),
                    "fd_band": [round(min(fds), 5), round(max(fds), 5)], "recall": round(rec_v, 4),
                    "recall_fp32": round(recalls[0], 4), "recall_band": [round(min(recalls), 4),
                                                                          round(max(recalls), 4)]})
        # Paired: the variant and fp32 on the same seeds (set 0), so what differs is the
        # arithmetic; allowed: as much as fp32 itself moves from one seed set to another.
        fd_tol, rec_tol = max(fds) - min(fds), max(recalls) - min(recalls)
        if fd_v - fds[0] > fd_tol:
            reasons.append(f"Fréchet distance {fd_v:.4g} vs fp32's {fds[0]:.4g} on the same seeds: worse by more "
                           f"than fp32's spread over seed sets ({fd_tol:.3g})")
        if recalls[0] - rec_v > rec_tol:
            reasons.append(f"recall {rec_v:.4f} vs fp32's {recalls[0]:.4f} on the same seeds: lower by more than "
                           f"fp32's spread over seed sets ({rec_tol:.3g})")
    rec["passed"] = not reasons
    rec["reasons"] = reasons
    return rec


def write_gate(variant: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Store the gate's record in the variant's metadata (in place, atomically)."""
    import onnx
    path = Path(variant)
    model = onnx.load(str(path))
    info = md.read_onnx(model, str(path))
    info.gate = record
    md.write(model, info)
    atomic_write(path, model.SerializeToString())


def build_int8(folder: str | os.PathLike[str], features: str | os.PathLike[str] | None,
               seeds: int = GATE_SEEDS) -> dict[str, Any]:
    """Write and gate ``folder/generator_int8.onnx`` from ``folder/generator_uint8.onnx``;
    returns the gate's record."""
    folder = Path(folder)
    stage = temp_dir(folder, "int8")  # the variant appears under its name only once gated
    try:
        out = make_int8(folder / UINT8_FILE, stage / INT8_FILE)
        record = gate(folder / UINT8_FILE, out, features, seeds)
        write_gate(out, record)
        os.replace(out, folder / INT8_FILE)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return record


def features_for(dataset: str, given: str | os.PathLike[str] | None) -> Path | None:
    """The features model the gate uses: the one given, else the bundled one for the
    model's dataset, else None (the gate then cannot pass)."""
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise bad_value("features", str(given), "an existing features model .onnx file")
        return path
    from .metrics import features_path
    try:
        return features_path(dataset) if dataset else None
    except GansampleError:
        return None


def add_int8(folder: Path, features: Path | None, report: dict[str, Any]) -> None:
    """Export's and wrap's step: the int8 variant and its gate (``features`` from
    ``features_for``, resolved before the export began), recorded in ``report``. A graph
    the quantiser cannot handle costs the variant, not the export (logged)."""
    try:
        record = build_int8(folder, features)
    except GansampleError as e:
        log.warning("no int8 variant: %s", e)
        (folder / INT8_FILE).unlink(missing_ok=True)
        return
    report.setdefault("files", {})
    if isinstance(report["files"], dict):
        report["files"][INT8_FILE] = (folder / INT8_FILE).stat().st_size
    else:
        report["files"].append(INT8_FILE)
    report["int8_gate"] = record


def describe(record: dict[str, Any]) -> str:
    """One line for people: what the gate measured and whether it passed."""
    if not record:
        return "not gated"
    s = f"pixels vs fp32 over {record.get('seeds')} seeds: mean {record.get('mean_pixel_diff')}, " \
        f"max {record.get('max_pixel_diff')}"
    if "fd" in record:
        s += (f"; FD {record['fd']:.4g} vs fp32 {record['fd_fp32']:.4g} (fp32 over seed sets "
              f"{record['fd_band'][0]:.4g}-{record['fd_band'][1]:.4g}), recall {record['recall']:.3f} vs fp32 "
              f"{record['recall_fp32']:.3f} ({record['recall_band'][0]:.3f}-{record['recall_band'][1]:.3f})")
    return s + ("; passed" if record.get("passed") else "; failed: " + "; ".join(record.get("reasons", [])))
