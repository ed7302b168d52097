"""The only place an onnxruntime InferenceSession is created: device and provider
choice, threads, and the run call (IO binding on CUDA)."""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# onnxruntime-gpu writes a device id and an event database under ~/.cache/Microsoft/
# unless this is set before it is imported; gansample collects and sends nothing.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnxruntime.capi import onnxruntime_pybind11_state as _ortstate  # noqa: E402

from .errors import GansampleError, bad_value, first_line  # noqa: E402
from .metadata import FLOAT_NCHW, UINT8_NHWC, ModelInfo  # noqa: E402

try:  # also when the embedding program imported onnxruntime before gansample
    ort.disable_telemetry_events()
except AttributeError:  # builds without telemetry
    pass

log = logging.getLogger("gansample")
_ORT_ERRORS = (_ortstate.Fail, _ortstate.InvalidArgument, _ortstate.RuntimeException)
_NOTED: set[str] = set()

DEVICES = ("auto", "cpu", "cuda")
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
_CUDA_PROBE: tuple[bool, str] | None = None


def cuda_status() -> tuple[bool, str]:
    """(usable, reason). Checked without asking onnxruntime for CUDA, which would print
    error lines when the CUDA libraries are missing: the provider must be compiled in,
    an NVIDIA driver must be present and the CUDA runtime library must load."""
    global _CUDA_PROBE
    if _CUDA_PROBE is None:
        _CUDA_PROBE = _probe_cuda()
    return _CUDA_PROBE


def _probe_cuda() -> tuple[bool, str]:
    if CUDA not in ort.get_available_providers():
        return False, "this onnxruntime build has no CUDA provider (install onnxruntime-gpu)"
    if sys.platform.startswith("linux"):
        if not (os.path.exists("/proc/driver/nvidia") or Path("/dev/nvidia0").exists()):
            return False, "no NVIDIA driver found"
        # onnxruntime-gpu needs the CUDA runtime and cuDNN; try them the way it will.
        try:
            ort.preload_dlls()  # picks up pip-installed nvidia-* wheels when present
        except Exception:  # older onnxruntime, or nothing to preload
            pass
        for lib in ("libcudart.so.12", "libcudart.so.13", "libcudart.so"):
            try:
                ctypes.CDLL(lib)
                return True, ""
            except OSError:
                continue
        return False, "the CUDA runtime library (libcudart) cannot be loaded"
    return True, ""


@dataclass
class Device:
    requested: str
    providers: list[str]
    note: str = ""  # why auto fell back to the CPU, shown once by the CLI


def resolve_device(device: str) -> Device:
    if device not in DEVICES:
        raise bad_value("device", device, f"valid: {', '.join(DEVICES)}")
    if device == "cpu":
        return Device(device, [CPU])
    ok, why = cuda_status()
    if device == "cuda":
        if not ok:
            raise bad_value("device", device, f"CUDA cannot be used here: {why}; use cpu or auto")
        return Device(device, [CUDA, CPU])
    if ok:
        return Device(device, [CUDA, CPU])
    note = f"CUDA not available ({why}); using the CPU"
    if note not in _NOTED:  # once per process, through the "gansample" logger
        _NOTED.add(note)
        log.info("device: %s", note)
    return Device(device, [CPU], note=note)


def session_options(threads: int | None = None, spinning: bool = False) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    # Spin-waiting threads burn the cores that PNG encoding and other work need.
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return so


class Session:
    """One ONNX model on one device, with its gansample metadata."""

    def __init__(self, path: str | os.PathLike[str], device: str | Device = "auto",
                 threads: int | None = None, spinning: bool = False, io_binding: bool = True,
                 check: bool = True, arg: str = "model") -> None:
        """``arg``: the argument that named the file (``features`` for a feature extractor),
        which errors about the file name."""
        self.path = Path(path)
        self.io_binding = io_binding  # on CUDA; off only to measure what it saves
        self.device = device if isinstance(device, Device) else resolve_device(device)
        try:
            self._open(threads, spinning, check)
        except GansampleError as e:
            if e.arg not in (None, "model"):  # --device and the like
                raise
            text = str(e)
            text = text[len("model: "):] if text.startswith("model: ") else text
            raise GansampleError(f"{arg}: {text}", arg) from None

    def _open(self, threads: int | None, spinning: bool, check: bool) -> None:
        try:
            self.sess = ort.InferenceSession(str(self.path), sess_options=session_options(threads, spinning),
                                             providers=self.device.providers)
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            msg = first_line(e, 300)
            raise GansampleError(f"model: {self.path} is not a valid ONNX model ({msg})", "model") from None
        self.info = ModelInfo.from_props(self.sess.get_modelmeta().custom_metadata_map, str(self.path))
        self.provider = self.sess.get_providers()[0]
        if self.device.requested == "cuda" and self.provider != CUDA:
            raise bad_value("device", "cuda", f"onnxruntime fell back to {self.provider}; "
                            "check the CUDA and cuDNN installation")
        self.input_names = [i.name for i in self.sess.get_inputs()]
        self.output_name = self.sess.get_outputs()[0].name
        self._binding: Any = None
        self._binding_lock = threading.Lock()  # one IO binding per session: runs through it take turns
        if check:
            check_contract(self)

    @property
    def on_cuda(self) -> bool:
        return self.provider == CUDA

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        feeds = {k: v for k, v in feeds.items() if k in self.input_names}
        try:
            return self._run(feeds)
        except _ORT_ERRORS as e:
            msg = first_line(e, 300)
            raise GansampleError(f"model: onnxruntime could not run {self.path.name} ({msg})", "model") from None

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if not (self.on_cuda and self.io_binding):
            return self.sess.run([self.output_name], feeds)[0]
        # IO binding: inputs copied once to the device, the output allocated there and
        # copied back in one transfer, without onnxruntime's per-run staging.
        with self._binding_lock:
            return self._run_bound(feeds)

    def _run_bound(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if self._binding is None:
            self._binding = self.sess.io_binding()
        b = self._binding
        for k, v in feeds.items():
            b.bind_cpu_input(k, np.ascontiguousarray(v))
        b.bind_output(self.output_name, "cuda")
        self.sess.run_with_iobinding(b)
        out = b.copy_outputs_to_cpu()[0]
        b.clear_binding_inputs()
        b.clear_binding_outputs()
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "provider": self.provider,
            "inputs": [(i.name, i.type, i.shape) for i in self.sess.get_inputs()],
            "outputs": [(o.name, o.type, o.shape) for o in self.sess.get_outputs()],
        }


_TYPES = {FLOAT_NCHW: "tensor(float)", UINT8_NHWC: "tensor(uint8)"}


def check_contract(s: Session) -> None:
    """Check that the graph is what its metadata says (inputs, outputs, shapes, class
    count), with one probe run at batch 1, so a mismatched file fails when it is opened
    with one line naming the mismatch, not later inside onnxruntime or numpy."""
    info = s.info
    if info.role == "encoder":
        _check_encoder(s)
        return
    if info.role not in ("generator", "discriminator"):
        return
    inputs = {i.name: i for i in s.sess.get_inputs()}
    outputs = s.sess.get_outputs()
    r, c, k = info.img_resolution, info.img_channels, info.num_classes

    def fail(why: str) -> GansampleError:
        return GansampleError(f"model: {s.path} does not match its gansample metadata: {why}", "model")

    if info.role == "generator":
        cond = "class_weights" if info.variant == "mix" else "label"
        expected = ["z"] + ([cond] if k else []) + (["psi"] if info.truncation == "w" else [])
        probe: dict[str, np.ndarray] = {"z": np.zeros((1, info.z_dim), np.float32)}
        if info.truncation == "w":
            probe["psi"] = np.ones(1, np.float32)
        if k:
            probe[cond] = (np.eye(k, dtype=np.float32)[k - 1:] if cond == "class_weights"
                           else np.array([k - 1], np.int64))
        out_shape = (1, c, r, r) if info.output == FLOAT_NCHW else (1, r, r, c)
    else:
        expected = ["images"] + (["label"] if k else [])
        probe = {"images": np.zeros((1, c, r, r), np.float32)}
        if k:
            probe["label"] = np.array([k - 1], np.int64)
        out_shape = (1, 1, 1, 1)  # unused for D: any one value per image passes
    if sorted(inputs) != sorted(expected):
        raise fail(f"the graph's inputs are {sorted(inputs)}; a {'conditional' if k else 'unconditional'} "
                   f"{info.role}{' (variant mix)' if info.variant == 'mix' else ''} takes {expected}")
    for name, arr in probe.items():
        dims = inputs[name].shape
        if dims and isinstance(dims[0], int) and dims[0] != -1:
            raise fail(f"input {name!r} has a fixed batch size {dims[0]}; gansample needs a dynamic batch "
                       "dimension (export with a symbolic first dimension)")
        if len(dims) != arr.ndim or any(isinstance(d, int) and d != a for d, a in zip(dims[1:], arr.shape[1:])):
            raise fail(f"input {name!r} has shape {dims}; the metadata implies [batch, "
                       f"{', '.join(str(a) for a in arr.shape[1:])}]")
    if info.role == "generator" and outputs[0].type != _TYPES[info.output]:
        raise fail(f"output {outputs[0].name!r} is {outputs[0].type}; the metadata says {info.output}")
    try:
        y = s.sess.run([s.output_name], probe)[0]
    except Exception as e:  # onnxruntime's own exception types
        msg = first_line(e)
        raise fail(f"a probe run with the metadata's sizes (z_dim {info.z_dim}, {k} classes, "
                   f"{r}x{r}x{c}) failed: {msg}") from None
    if info.role == "discriminator":
        ok = y.size == 1
    else:
        ok = tuple(y.shape) == out_shape
    if not ok:
        raise fail(f"a probe run returned shape {list(y.shape)}; the metadata implies {list(out_shape)}")


def _check_encoder(s: Session) -> None:
    """An encoder takes uint8 images NHWC and returns z [N, z_dim] (+ class_logits)."""
    info = s.info
    r, c = info.img_resolution, info.img_channels
    inputs = s.sess.get_inputs()
    outputs = [o.name for o in s.sess.get_outputs()]
    want = ["z", "class_logits"] if info.num_classes else ["z"]
    if [i.name for i in inputs] != ["images"] or inputs[0].type != "tensor(uint8)" or outputs != want:
        raise GansampleError(f"model: {s.path} does not match its gansample metadata: an encoder takes "
                             f"'images' (uint8) and returns {want}; this graph takes "
                             f"{[(i.name, i.type) for i in inputs]} and returns {outputs}", "model")
    try:
        z = s.sess.run(["z"], {"images": np.zeros((1, r, r, c), np.uint8)})[0]
    except Exception as e:  # onnxruntime's own exception types
        raise GansampleError(f"model: {s.path}: a probe run with {r}x{r}x{c} images failed: {first_line(e)}",
                             "model") from None
    if tuple(z.shape) != (1, info.z_dim):
        raise GansampleError(f"model: {s.path}: the encoder returned z of shape {list(z.shape)}; the metadata "
                             f"implies [1, {info.z_dim}]", "model")
