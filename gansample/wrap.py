"""Bring an ONNX generator from elsewhere into the model contract (no torch needed).

The foreign graph is kept as it is and framed: a new input ``z`` [B, z_dim] (reshaped to
the latent shape the graph takes, e.g. [B, z, 1, 1]), a new input ``label`` [B] (cast, or
turned into one-hot rows, as the graph takes labels), and after its image output the
conversion to float NCHW in [-1, 1] named ``images``; the uint8 variant appends the
quantisation of the contract. What the user declares (z_dim, range, layout, resolution)
is checked against the graph and a smoke sample before anything is written.
Needs the ``onnx`` package (the ``wrap`` extra).
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import metadata as md
from .errors import bad_value, check_count, first_line
from .files import atomic_write, publish
from .reduced import add_int8, features_for
from .registry import DISCRIMINATOR_FILE, MODEL_FILES

_FLOAT = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
_INT = {2, 3, 4, 5, 6, 7, 12, 13}
RANGE_SLACK = 0.05  # smoke-sample values may exceed the declared range by this much
MAX_RESOLUTION = 4096  # image side (the CLI's --resolution range; 16.8 megapixels, under images.MAX_PIXELS)
MAX_Z_DIM = 1 << 20  # latent numbers per image (the CLI's --z-dim range)
MAX_CLASSES = 100_000  # as for a trained or exported model
SMOKE_BATCH = 4


def check_class_names(names: Sequence[str], arg: str = "class_names") -> list[str]:
    """At most MAX_CLASSES names, each given once, or a GansampleError naming ``arg``."""
    names = list(names)
    if len(names) > MAX_CLASSES:
        raise bad_value(arg, f"<{len(names)} names>", f"at most {MAX_CLASSES} class names")
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise bad_value(arg, n, "each class name once; this one is given more than once")
        seen.add(n)
    return names


def wrap_onnx(path: str | os.PathLike[str], out: str | os.PathLike[str], *, z_dim: int,
              output_range: tuple[float, float] = (-1.0, 1.0), layout: str = "NCHW",
              class_names: Sequence[str] | None = None, num_classes: int = 0, conditioning: str | None = None,
              name: str | None = None, output: str | None = None, resolution: int | None = None,
              discriminator: str | os.PathLike[str] | None = None, int8: bool = True,
              features: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Write ``generator.onnx`` and ``generator_uint8.onnx`` with the contract into ``out``
    (and ``discriminator.onnx`` from ``discriminator``, which takes images in the same
    range and layout as the generator makes them). ``int8``: also ``generator_int8.onnx``
    where onnxruntime can quantise the graph, gated in the space of the ``features``
    model (without one it is written but never chosen automatically)."""
    import onnx
    from onnx import TensorProto, helper
    if not str(out).strip():
        raise bad_value("out", str(out), "a folder path")
    z_dim = check_count("z_dim", z_dim, 1, MAX_Z_DIM)
    if resolution is not None:
        resolution = check_count("resolution", resolution, 1, MAX_RESOLUTION)
    names = check_class_names(class_names or [])
    num_classes = check_count("num_classes", num_classes, 0, MAX_CLASSES)
    if names and len(names) != num_classes:
        raise bad_value("class_names", f"<{len(names)} names>", f"{num_classes} names (num_classes)")
    if num_classes and conditioning not in (None, "index"):
        raise bad_value("conditioning", conditioning, "index: a wrapped graph takes integer labels (for a "
                        "generator taking one-hot rows, export its PyTorch module instead)")
    if not num_classes and conditioning is not None:
        raise bad_value("conditioning", conditioning, "nothing for an unconditional graph (a conditional one "
                        "needs its class names)")
    feats = features_for("", features) if int8 else None

    src = Path(path)
    try:
        model = onnx.load(str(src))
    except Exception as e:  # onnx raises protobuf's and its own error types for unreadable files
        raise bad_value("onnx_file", str(path), f"a readable ONNX file ({first_line(e, 160, '')})") from None
    if tuple(output_range) not in ((-1.0, 1.0), (0.0, 1.0)):
        raise bad_value("output_range", ",".join(f"{v:g}" for v in output_range), "-1,1 or 0,1")
    if layout not in ("NCHW", "NHWC"):
        raise bad_value("layout", layout, "NCHW or NHWC")
    g = model.graph
    inits, inputs, floats, ints = _graph_inputs(g)
    if len(floats) != 1 or len(floats) + len(ints) != len(inputs):
        raise bad_value("onnx_file", str(path), "a generator with one float latent input (and at most one "
                        f"integer label input); this graph takes {[i.name for i in inputs]}")
    latent = floats[0]
    label = ints[0] if ints else None
    if len(ints) > 1:
        raise bad_value("onnx_file", str(path), f"at most one integer input (labels); got {[i.name for i in ints]}")
    if num_classes and label is None:
        raise bad_value("class_names", f"<{num_classes} names>", f"a graph with an integer label input; this "
                        f"one takes only {latent.name!r} (leave the class names out)")
    if label is not None:
        width = _label_width(g, label.name)
        if not num_classes:
            count = f"{width} " if width else ""
            raise bad_value("class_names", None, f"the names of the graph's {count}classes, one per line: it is "
                            f"conditional (it takes an integer label input {label.name!r})")
        if width is not None and width != num_classes:
            raise bad_value("class_names", f"<{num_classes} names>", f"{width} names, one per class of the "
                            f"graph's label input {label.name!r} (its label table has {width} rows)")
    outs = [o.name for o in g.output]
    if output is None:
        if len(outs) != 1:
            raise bad_value("output_name", None, f"one of the graph's outputs {outs} (it has several)")
        output = outs[0]
    elif output not in outs:
        raise bad_value("output_name", output, f"one of the graph's outputs {outs}")
    dims = _output_dims(model, output)
    fixed = [d for d in dims[1:] if d is not None]
    if any(d > MAX_RESOLUTION for d in fixed) or math.prod(fixed) > 3 * MAX_RESOLUTION ** 2:
        raise bad_value("onnx_file", str(path), f"a generator of images at most {MAX_RESOLUTION}x{MAX_RESOLUTION} "
                        f"pixels, 1 or 3 channels; its output {output!r} is declared "
                        f"{['B' if d is None else d for d in dims]}")
    ldims = [d.dim_value if d.HasField("dim_value") else None for d in latent.type.tensor_type.shape.dim]
    static = [d for d in ldims[1:]]
    if len(ldims) not in (2, 4) or any(d is not None for d in static) and int(np.prod([d or 1 for d in static])) != z_dim:
        raise bad_value("z_dim", z_dim, f"the size of the graph's latent input {latent.name!r} of shape "
                        f"{['B' if d is None else d for d in ldims]}")
    latent_shape = [z_dim] if len(ldims) == 2 else [z_dim, 1, 1]

    # --- frame the foreign graph ---------------------------------------------------------
    m = copy.deepcopy(model)
    fg = m.graph
    # The foreign names may be the contract's own (z, label, images): they are renamed.
    lat_name, lab_name, out_name = "gs_foreign_latent", "gs_foreign_label", "gs_foreign_image"
    _rename(fg, latent.name, lat_name)
    if label is not None:
        _rename(fg, label.name, lab_name)
    _rename(fg, output, out_name)
    nodes = []
    z_in = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", z_dim])
    shape_init = helper.make_tensor("gs_latent_shape", TensorProto.INT64, [len(latent_shape) + 1],
                                    [-1, *latent_shape])
    fg.initializer.append(shape_init)
    zf = "gs_z_float"
    ltype = latent.type.tensor_type.elem_type
    nodes.append(helper.make_node("Cast", ["z"], [zf], to=ltype))
    nodes.append(helper.make_node("Reshape", [zf, "gs_latent_shape"], [lat_name]))
    new_inputs = [z_in]
    if num_classes:
        new_inputs.append(helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]))
        assert label is not None
        nodes.append(helper.make_node("Cast", ["label"], [lab_name], to=label.type.tensor_type.elem_type))
    x = out_name
    tail = [helper.make_node("Cast", [x], ["gs_img_f"], to=TensorProto.FLOAT)]
    x = "gs_img_f"
    if layout == "NHWC":
        tail.append(helper.make_node("Transpose", [x], ["gs_img_nchw"], perm=[0, 3, 1, 2]))
        x = "gs_img_nchw"
    if tuple(output_range) == (0.0, 1.0):
        fg.initializer.extend([helper.make_tensor("gs_two", TensorProto.FLOAT, [], [2.0]),
                               helper.make_tensor("gs_one", TensorProto.FLOAT, [], [1.0])])
        tail += [helper.make_node("Mul", [x, "gs_two"], ["gs_img_x2"]),
                 helper.make_node("Sub", ["gs_img_x2", "gs_one"], ["gs_img_pm1"])]
        x = "gs_img_pm1"
    tail.append(helper.make_node("Identity", [x], ["images"]))
    _frame(fg, inits, new_inputs, nodes, tail,
           helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", None, None, None]))

    # --- smoke sample: what was declared must be what the graph does --------------------------
    smoke = _smoke(m, z_dim, num_classes)
    if smoke.ndim >= 1 and smoke.shape[0] != SMOKE_BATCH:
        raise bad_value("onnx_file", str(path), f"a generator whose image batch follows the latent batch: "
                        f"{SMOKE_BATCH} latents gave output of shape {list(smoke.shape)}")
    if smoke.ndim != 4 or smoke.shape[1] not in (1, 3) or smoke.shape[2] != smoke.shape[3]:
        raise bad_value("layout", layout, f"the layout of the graph's output: read as {layout} it gives "
                        f"{list(smoke.shape)}, not [B, C, H, H] with C 1 or 3")
    res, ch = int(smoke.shape[2]), int(smoke.shape[1])
    if res > MAX_RESOLUTION:
        raise bad_value("onnx_file", str(path), f"a generator of images at most {MAX_RESOLUTION}x{MAX_RESOLUTION} "
                        f"pixels; a smoke sample is {res}x{res}")
    if resolution is not None and resolution != res:
        raise bad_value("resolution", resolution, f"the graph's image size, {res}")
    lo, hi = float(smoke.min()), float(smoke.max())
    if lo < -1 - 2 * RANGE_SLACK or hi > 1 + 2 * RANGE_SLACK:
        declared = ",".join(f"{v:g}" for v in output_range)
        raw = (lo + 1) / 2 * (output_range[1] - output_range[0]) + output_range[0]
        raw_hi = (hi + 1) / 2 * (output_range[1] - output_range[0]) + output_range[0]
        raise bad_value("output_range", declared, f"the range of the graph's output: a smoke sample spans "
                        f"[{raw:.3g}, {raw_hi:.3g}]")

    info = md.ModelInfo(role="generator", img_resolution=res, img_channels=ch, z_dim=z_dim, num_classes=num_classes,
                        class_names=names, name=name or Path(out).resolve().name, provenance="onnx-wrap",
                        architecture={"source": src.name, "latent_input": latent.name, "output": output,
                                      "output_range": list(output_range), "layout": layout,
                                      "latent_shape": latent_shape})
    info.validate("onnx_file")
    md.write(m, info)
    u8 = _uint8_variant(m, info)
    d_model = (_wrap_discriminator(discriminator, info, tuple(output_range), layout)
               if discriminator is not None else None)

    def build(stage: Path) -> dict[str, Any]:
        files = ["generator.onnx", "generator_uint8.onnx"]
        atomic_write(stage / "generator.onnx", m.SerializeToString())
        atomic_write(stage / "generator_uint8.onnx", u8.SerializeToString())
        report: dict[str, Any] = {"files": files}
        if int8:
            add_int8(stage, feats, report)
        if d_model is not None:
            atomic_write(stage / DISCRIMINATOR_FILE, d_model.SerializeToString())
            files.append(DISCRIMINATOR_FILE)
        return report

    # Staged, then moved in: an earlier model's variants and discriminator there go.
    report = publish(out, build, MODEL_FILES)
    return {**report, "smoke_shape": list(smoke.shape), "smoke_min": lo, "smoke_max": hi}


def _wrap_discriminator(path: str | os.PathLike[str], info: md.ModelInfo, output_range: tuple[float, ...],
                        layout: str) -> Any:
    """Frame a foreign discriminator: contract images (float NCHW [-1, 1]) converted to the
    range and layout it takes, labels cast to its type, its score flattened to logits [B]."""
    import onnx
    from onnx import TensorProto, helper
    try:
        m = onnx.load(str(path))
    except Exception as e:  # protobuf's and onnx's own error types
        raise bad_value("discriminator", str(path), f"a readable ONNX file ({first_line(e, 160, '')})") from None
    g = m.graph
    inits, inputs, floats, ints = _graph_inputs(g)
    if len(floats) != 1 or len(ints) > (1 if info.num_classes else 0) or len(floats) + len(ints) != len(inputs):
        raise bad_value("discriminator", str(path), "a discriminator with one float image input"
                        f"{' and one integer label input' if info.num_classes else ''}; this graph takes "
                        f"{[i.name for i in inputs]}")
    if len(g.output) != 1:
        raise bad_value("discriminator", str(path), f"a discriminator with one output; it has {[o.name for o in g.output]}")
    img, lab, score = floats[0], (ints[0] if ints else None), g.output[0].name
    _rename(g, img.name, "gs_foreign_images")
    if lab is not None:
        _rename(g, lab.name, "gs_foreign_label")
    _rename(g, score, "gs_foreign_score")
    pre = []
    x = "images"
    if tuple(output_range) == (0.0, 1.0):
        g.initializer.extend([helper.make_tensor("gs_half", TensorProto.FLOAT, [], [0.5])])
        pre += [helper.make_node("Mul", [x, "gs_half"], ["gs_d1"]), helper.make_node("Add", ["gs_d1", "gs_half"], ["gs_d2"])]
        x = "gs_d2"
    if layout == "NHWC":
        pre.append(helper.make_node("Transpose", [x], ["gs_d3"], perm=[0, 2, 3, 1]))
        x = "gs_d3"
    pre.append(helper.make_node("Cast", [x], ["gs_foreign_images"], to=img.type.tensor_type.elem_type))
    new_inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                ["batch", info.img_channels, info.img_resolution, info.img_resolution])]
    if lab is not None:
        new_inputs.append(helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]))
        pre.append(helper.make_node("Cast", ["label"], ["gs_foreign_label"], to=lab.type.tensor_type.elem_type))
    g.initializer.extend([helper.make_tensor("gs_rows", TensorProto.INT64, [2], [0, -1]),
                          helper.make_tensor("gs_first", TensorProto.INT64, [], [0])])
    post = [helper.make_node("Cast", ["gs_foreign_score"], ["gs_s1"], to=TensorProto.FLOAT),
            helper.make_node("Reshape", ["gs_s1", "gs_rows"], ["gs_s2"]),
            helper.make_node("Gather", ["gs_s2", "gs_first"], ["logits"], axis=1)]
    _frame(g, inits, new_inputs, pre, post, helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch"]))
    import onnxruntime as ort
    try:
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        r, c = info.img_resolution, info.img_channels
        feeds: dict[str, np.ndarray] = {"images": np.zeros((2, c, r, r), np.float32)}
        if lab is not None:
            feeds["label"] = np.zeros(2, np.int64)
        y = sess.run(["logits"], feeds)[0]
    except Exception as e:  # onnxruntime's own exception types
        first = first_line(e)
        raise bad_value("discriminator", str(path), f"a discriminator that takes the generator's "
                        f"{info.img_resolution}x{info.img_resolution}x{info.img_channels} images ({first})") from None
    if y.shape != (2,):
        raise bad_value("discriminator", str(path), f"one score per image; it returns shape {list(y.shape)}")
    md.write(m, md.ModelInfo(**{**info.__dict__, "role": "discriminator"}))
    return m


def _graph_inputs(graph: Any) -> tuple[set[str], list[Any], list[Any], list[Any]]:
    """(initializer names, the real inputs, the float ones, the integer ones) of a graph;
    older exporters list initializers among the inputs too."""
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    return (inits, inputs, [i for i in inputs if i.type.tensor_type.elem_type in _FLOAT],
            [i for i in inputs if i.type.tensor_type.elem_type in _INT])


def _frame(graph: Any, inits: set[str], new_inputs: list[Any], pre: list[Any], post: list[Any],
           output: Any) -> None:
    """Put ``pre`` before and ``post`` after the graph's nodes, and make ``new_inputs``
    (plus the initializers listed as inputs) and ``output`` its interface."""
    kept = [i for i in graph.input if i.name in inits]
    del graph.input[:]
    graph.input.extend(new_inputs + kept)
    body = list(graph.node)
    del graph.node[:]
    graph.node.extend(pre + body + post)
    del graph.output[:]
    graph.output.append(output)


def _rename(graph: Any, old: str, new: str) -> None:
    """Rename a value everywhere it is produced or consumed in ``graph`` (not subgraphs)."""
    for n in graph.node:
        n.input[:] = [new if i == old else i for i in n.input]
        n.output[:] = [new if o == old else o for o in n.output]
    for v in graph.value_info:
        if v.name == old:
            v.name = new


def _smoke(model: Any, z_dim: int, num_classes: int) -> np.ndarray:
    """SMOKE_BATCH images (labels 0, 1, ... and the last class)."""
    import onnxruntime as ort

    def run(labels: np.ndarray | None) -> np.ndarray:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        feeds = {"z": np.random.RandomState(0).randn(SMOKE_BATCH, z_dim).astype(np.float32)}
        if labels is not None:
            feeds["label"] = labels
        return np.asarray(sess.run(["images"], feeds)[0])
    labels = None
    if num_classes:
        labels = np.arange(SMOKE_BATCH, dtype=np.int64) % num_classes
        labels[-1] = num_classes - 1
    try:
        return run(labels)
    except Exception as e:  # onnxruntime's own exception types
        first = first_line(e)
    if labels is not None and labels.max() > 0:
        try:
            run(np.zeros(SMOKE_BATCH, np.int64))
            labels_only = True  # label 0 works: the last class is what fails
        except Exception:  # fails whatever the labels: the latents are reported below
            labels_only = False
        if labels_only:
            raise bad_value("class_names", f"<{num_classes} names>", f"as many names as the graph has classes: "
                            f"a smoke sample with label {num_classes - 1} failed ({first})")
    raise bad_value("z_dim", z_dim, f"a latent size the graph accepts: a smoke sample failed ({first})")


def _output_dims(model: Any, output: str) -> list[int | None]:
    """The declared shape of the graph's output ``output`` (None for a dimension not fixed),
    completed by onnx's shape inference where the declaration leaves dimensions open."""
    import onnx

    def dims(graph: Any) -> list[int | None]:
        value = next((o for o in graph.output if o.name == output), None)
        if value is None or not value.type.tensor_type.HasField("shape"):
            return []
        return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
    declared = dims(model.graph)
    if declared and all(d is not None for d in declared[1:]):
        return declared
    try:
        inferred = dims(onnx.shape_inference.infer_shapes(model).graph)
    except Exception:  # onnx's own error types: the declaration is all there is
        return declared
    if len(inferred) != len(declared) and declared:
        return declared
    return [a if a is not None else b for a, b in zip(declared, inferred)] if declared else inferred


_PASS_THROUGH = {"Cast", "Identity", "Squeeze", "Unsqueeze", "Reshape", "Flatten"}


def _label_width(graph: Any, label: str) -> int | None:
    """How many classes the graph's integer label input ``label`` selects from, where the
    graph says: the rows of the table a Gather picks with it (an embedding), or the depth of
    a OneHot of it; None where neither is found."""
    import onnx
    consts = {i.name: i for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = n.attribute[0].t
    names, seen = [label], {label}
    while names:
        name = names.pop()
        for n in graph.node:
            if n.op_type in _PASS_THROUGH and n.input and n.input[0] == name and n.output[0] not in seen:
                seen.add(n.output[0])
                names.append(n.output[0])
            elif n.op_type == "Gather" and len(n.input) == 2 and n.input[1] == name and n.input[0] in consts:
                axis = next((a.i for a in n.attribute if a.name == "axis"), 0)
                table = consts[n.input[0]].dims
                if len(table) > axis:
                    return int(table[axis])
            elif n.op_type == "OneHot" and len(n.input) >= 2 and n.input[0] == name and n.input[1] in consts:
                depth = onnx.numpy_helper.to_array(consts[n.input[1]]).reshape(-1)
                if depth.size == 1:
                    return int(depth[0])
    return None


def _uint8_variant(model: Any, info: md.ModelInfo) -> Any:
    """The float contract graph with the contract's quantisation appended (uint8 NHWC out)."""
    from onnx import TensorProto, helper
    m = copy.deepcopy(model)
    g = m.graph
    for n in g.node:
        n.output[:] = ["gs_images_f" if o == "images" else o for o in n.output]
    g.initializer.extend([helper.make_tensor("gs_q_scale", TensorProto.FLOAT, [], [md.QUANT_SCALE]),
                          helper.make_tensor("gs_q_offset", TensorProto.FLOAT, [], [md.QUANT_OFFSET]),
                          helper.make_tensor("gs_q_lo", TensorProto.FLOAT, [], [0.0]),
                          helper.make_tensor("gs_q_hi", TensorProto.FLOAT, [], [255.0])])
    g.node.extend([helper.make_node("Mul", ["gs_images_f", "gs_q_scale"], ["gs_q1"]),
                   helper.make_node("Add", ["gs_q1", "gs_q_offset"], ["gs_q2"]),
                   helper.make_node("Clip", ["gs_q2", "gs_q_lo", "gs_q_hi"], ["gs_q3"]),
                   helper.make_node("Cast", ["gs_q3"], ["gs_q4"], to=TensorProto.UINT8),
                   helper.make_node("Transpose", ["gs_q4"], ["images"], perm=[0, 2, 3, 1])])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", None, None, None]))
    md.write(m, md.ModelInfo(**{**info.__dict__, "output": md.UINT8_NHWC, "variant": "uint8"}))
    return m
