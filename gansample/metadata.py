"""THE model contract: the ONNX metadata every gansample model carries.

One module reads, validates and writes it; docs/model-format.md describes it for
people who embed the files without gansample. Keys live in ``metadata_props`` with the
prefix ``gansample.``; every value is a string (JSON for lists and dicts).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from .errors import GansampleError
from .latents import SEED_RULE

PREFIX = "gansample."
# 2: generators truncated in W (a `psi` input); files without it are still written as 1,
# so readers from before version 2 keep reading every file they could read.
FORMAT_VERSION = 2
ROLES = ("generator", "discriminator", "features", "encoder")
TRUNCATION_SPACES = ("z", "w")
PROVENANCES = ("gansample-trainer", "torch-module", "onnx-wrap")
# Layouts of the tensor a model returns (generator) or takes (discriminator, features).
FLOAT_NCHW = "float32 NCHW [-1,1]"
UINT8_NHWC = "uint8 NHWC [0,255]"
OUTPUTS = (FLOAT_NCHW, UINT8_NHWC)
# How a float image becomes uint8, exactly, wherever it is done (in the graph or on the host).
QUANT_SCALE, QUANT_OFFSET = 127.5, 128.0
QUANTIZE_RULE = f"uint8 = trunc(clip(x * {QUANT_SCALE:g} + {QUANT_OFFSET:g}, 0, 255))"


@dataclass
class ModelInfo:
    """Everything the runtime needs to drive a model, read from its ONNX metadata."""

    role: str
    img_resolution: int
    img_channels: int
    z_dim: int = 0
    num_classes: int = 0
    class_names: list[str] = field(default_factory=list)
    output: str = FLOAT_NCHW  # generator: what it returns; discriminator: what it takes
    variant: str = "fp32"  # fp32 | uint8 | fp16 | int8 | mix
    seed_rule: str = SEED_RULE
    name: str = ""
    dataset: str = ""
    train_steps: int = 0
    source_commit: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    architecture: dict[str, Any] = field(default_factory=dict)  # the trainer's model arguments
    # Where truncation applies: "z" (the runtime scales z by psi) or "w" (the graph takes a
    # `psi` input [N] and pulls W towards its average inside: style-based generators).
    truncation: str = "z"
    provenance: str = "gansample-trainer"  # or "torch-module" (export_generator), "onnx-wrap"
    format_version: int = 1
    # Reduced-precision variants: the quality gate's record (gansample.reduced.gate):
    # pixel differences, Fréchet distance and recall against fp32, and "passed".
    gate: dict[str, Any] = field(default_factory=dict)

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def to_props(self) -> dict[str, str]:
        out = {}
        for k, v in asdict(self).items():
            out[PREFIX + k] = json.dumps(v) if isinstance(v, (list, dict)) else str(v)
        return out

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "model") -> "ModelInfo":
        """Parse and validate; raises GansampleError naming what is wrong."""
        ours = {k[len(PREFIX):]: v for k, v in props.items() if k.startswith(PREFIX)}
        if not ours:
            raise GansampleError(f"{source}: not a gansample model (its ONNX metadata has no "
                                 f"'{PREFIX}*' keys): bring an ONNX generator from elsewhere in with 'gansample wrap', "
                                 "or export a PyTorch one with 'gansample export'")
        try:
            version = int(ours.get("format_version", "0"))
            if version > FORMAT_VERSION:
                raise GansampleError(f"{source}: model format version {version} is newer than this "
                                     f"gansample reads ({FORMAT_VERSION}); upgrade gansample")
            info = cls(
                role=ours["role"],
                img_resolution=int(ours["img_resolution"]),
                img_channels=int(ours["img_channels"]),
                z_dim=int(ours.get("z_dim", 0)),
                num_classes=int(ours.get("num_classes", 0)),
                class_names=list(json.loads(ours.get("class_names", "[]"))),
                output=ours.get("output", FLOAT_NCHW),
                variant=ours.get("variant", "fp32"),
                seed_rule=ours.get("seed_rule", SEED_RULE),
                name=ours.get("name", ""),
                dataset=ours.get("dataset", ""),
                train_steps=int(ours.get("train_steps", 0)),
                source_commit=ours.get("source_commit", ""),
                metrics=dict(json.loads(ours.get("metrics", "{}"))),
                architecture=dict(json.loads(ours.get("architecture", "{}"))),
                truncation=ours.get("truncation", "z"),
                provenance=ours.get("provenance", "gansample-trainer"),
                format_version=version,
                gate=dict(json.loads(ours.get("gate", "{}"))),
            )
        except KeyError as e:
            raise GansampleError(f"{source}: gansample metadata lacks the key {PREFIX}{e.args[0]}") from None
        except (ValueError, TypeError) as e:
            raise GansampleError(f"{source}: gansample metadata is malformed ({e})") from None
        info.validate(source)
        return info

    def validate(self, source: str = "model") -> None:
        problems = []
        if self.role not in ROLES:
            problems.append(f"role {self.role!r} not in {ROLES}")
        if self.img_channels not in (1, 3):
            problems.append(f"img_channels {self.img_channels} not 1 or 3")
        if self.img_resolution <= 0:
            problems.append(f"img_resolution {self.img_resolution} <= 0")
        if self.role in ("generator", "encoder") and self.z_dim <= 0:
            problems.append(f"z_dim {self.z_dim} <= 0")
        if self.num_classes < 0 or (self.class_names and len(self.class_names) != self.num_classes):
            problems.append(f"{len(self.class_names)} class_names for num_classes {self.num_classes}")
        if self.truncation not in TRUNCATION_SPACES:
            problems.append(f"truncation {self.truncation!r} not in {TRUNCATION_SPACES}")
        if self.output not in OUTPUTS:
            problems.append(f"output {self.output!r} not in {OUTPUTS}")
        # The name becomes part of file and folder names (out/NAME, NAME-seeds.zip).
        if (len(self.name) > 100 or self.name in (".", "..") or self.name.startswith(".")
                or any(ch in self.name for ch in '/\\:*?"<>|') or any(ord(ch) < 32 for ch in self.name)):
            problems.append(f"name {self.name[:100]!r} is not usable as a file name")
        if problems:
            raise GansampleError(f"{source}: invalid gansample metadata: {'; '.join(problems)}")


def write(model: Any, info: ModelInfo) -> None:
    """Set the metadata on an ``onnx.ModelProto`` in place (replacing older gansample keys)."""
    info.validate()
    # The lowest version that describes the file: older readers keep reading what they can.
    info.format_version = 2 if info.truncation == "w" else 1
    keep = [p for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in info.to_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v


def read_onnx(model: Any, source: str = "model") -> ModelInfo:
    """Read from an ``onnx.ModelProto`` (for tools that have onnx but not onnxruntime)."""
    return ModelInfo.from_props({p.key: p.value for p in model.metadata_props}, source)
