"""gansample web demo: generate, explore, interpolate and score in the browser.

    python app.py [--model NAME_OR_FOLDER ...] [--host 127.0.0.1] [--port 7860] [--device auto]

The only module that imports gradio. Every callback is a module-level function over
gansample's Python API (testable without a browser) and checks every size it is given
before spending memory or time on it. Files it hands to the browser are written
atomically into gradio's cache, named by their content (identical requests share them and
never rewrite a file another response is streaming), and swept by gradio's delete_cache.
Works offline: no external fonts, scripts or analytics.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from gradio.utils import get_upload_folder  # noqa: E402
import numpy as np  # noqa: E402

from . import Discriminator, GansampleError, Generator, available_models  # noqa: E402
from .errors import check_count  # noqa: E402
from .images import encode_png  # noqa: E402
from .directions import Directions, load_directions  # noqa: E402
from .interpolation import check_walk, gif_bytes, interpolate  # noqa: E402
from .latents import latents_for_seeds  # noqa: E402
from .latents import MAX_SEED, parse_seeds  # noqa: E402
from .output import atomic_write, seed_filename, zip_bytes  # noqa: E402
from .registry import DEFAULT_MODEL, GENERATOR_FILES  # noqa: E402

MAX_COUNT = 256  # images per Generate request
MAX_FRAMES = 600  # frames per Interpolate request
MAX_UPLOADS = 64  # files per Score request
MAX_UPLOAD_BYTES = 16 * 2**20  # per uploaded file (gradio refuses larger ones before they are stored)
CACHE_AGE = 600  # seconds before gradio's delete_cache removes a file this app produced
N_SLIDERS = 6  # direction sliders in the Explore tab
SLIDER_RANGE = 5.0  # in standard deviations of z
EXPLORE_SIZE = 256  # px the Explore image is shown at (nearest-neighbour upscaling)
BY_SEED = "(from the seed)"
SORTS = ("seed", "D score: best first", "D score: worst first")
# The library's argument names -> the labels of the fields that carry them.
FIELDS = {"psi": "Truncation psi", "seeds": "Seeds", "cls": "Class", "steps": "Frames per transition",
          "method": "Method", "fps": "Frames per second", "model": "Model", "walks": "Seeds"}


class Models:
    """Generator/discriminator pairs, built once per model and shared by all requests."""

    def __init__(self, extra: Sequence[str], device: str) -> None:
        self.device = device
        self.paths: dict[str, str] = {name: str(p) for name, p in available_models().items()
                                      if (Path(p) / GENERATOR_FILES["fp32"]).exists()}
        for spec in extra:
            g = Generator(spec, device=device)
            self.paths[g.name] = spec
        self._cache: dict[str, tuple[Generator, Discriminator | None]] = {}
        self._directions: dict[str, Directions | str] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return sorted(self.paths)

    def get(self, name: str) -> tuple[Generator, Discriminator | None]:
        with self._lock:
            if name not in self._cache:
                if name not in self.paths:
                    raise GansampleError(f"model: got {str(name)[:100]!r}; available: {', '.join(self.names())}",
                                         "model")
                g = Generator(self.paths[name], device=self.device)
                try:
                    d: Discriminator | None = Discriminator(self.paths[name], device=self.device)
                except GansampleError:
                    d = None
                self._cache[name] = (g, d)
            return self._cache[name]

    def directions(self, name: str) -> Directions | str:
        """The model's principal directions, or why there are none (computed at most once)."""
        g, _ = self.get(name)
        with self._lock:
            if name not in self._directions:
                try:
                    self._directions[name] = load_directions(g)
                except GansampleError as e:
                    self._directions[name] = str(e)
            return self._directions[name]


def _ui_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the library's errors into gradio's message boxes, named after the fields."""
    @functools.wraps(fn)  # gradio reads the parameters through __wrapped__
    def wrapped(*args: Any) -> Any:
        try:
            return fn(*args)
        except GansampleError as e:
            raise gr.Error(e.renamed(FIELDS)) from None
    return wrapped


# --- files handed to the browser ------------------------------------------------------------
def cache_file(name: str, data: bytes, cache_dir: str | None = None) -> str:
    """Put a file into gradio's cache under a folder named by its content and return its
    path. Written atomically and never rewritten: concurrent identical requests get the
    same complete file (gradio's own cache writer rewrote shared files in place, and
    responses streaming them were cut off under load)."""
    folder = Path(cache_dir or get_upload_folder()) / "gansample"
    # One flat folder: gradio's sweep removes files, not folders, so a folder per file
    # would pile up empty folders.
    path = folder / f"{hashlib.sha256(data).hexdigest()[:32]}-{name}"
    if path.exists():
        try:  # the sweep ages files by ctime: a file handed out again must not be swept first
            os.utime(path)
        except OSError:
            pass
    else:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)
    return str(path)


# --- argument handling ----------------------------------------------------------------------
def _status(g: Generator, t0: float, extra: str = "") -> str:
    return f"**{g.provider}** · {time.perf_counter() - t0:.2f} s" + (f" · {extra}" if extra else "")


def _class_arg(g: Generator, cls: str | None) -> str | None:
    return None if not cls or cls == BY_SEED or not g.info.conditional else cls


def request_seeds(seed_text: str | None, start: Any, count: Any) -> list[int]:
    """The seeds of a Generate request: the seed text (ranges checked against the limit
    before anything is built), else start + count."""
    if seed_text and str(seed_text).strip():
        return list(parse_seeds(str(seed_text), "seeds", MAX_COUNT))
    n = check_count("count", count, 1, MAX_COUNT, "a whole number")
    first = check_count("start seed", 0 if start is None else start, 0, MAX_SEED - n + 1, "a whole number")
    return list(range(first, first + n))


def _upscale(img: np.ndarray, size: int = 112) -> np.ndarray:
    k = max(1, size // img.shape[0])
    return img.repeat(k, 0).repeat(k, 1) if k > 1 else img


# --- callbacks --------------------------------------------------------------------------------
def on_model(models: Models, name: str) -> tuple[Any, ...]:
    g, _ = models.get(name)
    choices = [BY_SEED] + g.class_names if g.info.conditional else [BY_SEED]
    return tuple(gr.update(choices=choices, value=BY_SEED) for _ in range(4))


def generate(models: Models, name: str, seed_text: str, start: Any, count: Any, psi: Any, cls: str | None,
             sort: str, min_score: str | None) -> tuple[list[tuple[str, str]], str, str]:
    """Sample, score with D, sort/filter by score; gallery items, the zip, a status line."""
    t0 = time.perf_counter()
    g, d = models.get(name)
    seeds = request_seeds(seed_text, start, count)
    threshold = None
    if str(min_score or "").strip():
        try:
            threshold = float(str(min_score))
        except ValueError:
            threshold = float("nan")
        if threshold != threshold:
            raise GansampleError(f"hide D score below: got {str(min_score)[:50]!r}; a number, or empty to show all")
    res = g.sample(seeds=seeds, psi=psi, cls=_class_arg(g, cls))
    scores = d.logits(res.images, res.labels) if d is not None else None
    order = list(range(len(seeds)))
    if scores is not None and sort != SORTS[0]:
        order = sorted(order, key=lambda i: -scores[i] if sort == SORTS[1] else scores[i])
    if scores is not None and threshold is not None:
        order = [i for i in order if scores[i] >= threshold]
    names = g.class_names
    items = []
    for i in order:
        cap = f"seed {seeds[i]}" + (f" · {names[res.labels[i]]}" if res.labels is not None else "")
        if scores is not None:
            cap += f" · D {scores[i]:+.2f}"
        items.append((cache_file(seed_filename(seeds[i]), encode_png(_upscale(res.images[i]), 1)), cap))
    zip_path = cache_file(f"{g.name}-seeds.zip", zip_bytes(res.images, seeds, res.labels, names, res.psi,
                                                           scores, order))
    shown = f"{len(items)} of {len(seeds)} images" if len(items) != len(seeds) else f"{len(items)} images"
    return items, zip_path, _status(g, t0, shown)


def walk(models: Models, name: str, seed_text: str, steps: Any, method: str, loop: bool, psi: Any,
         cls: str | None, fps: Any, start: dict[str, Any] | None = None,
         use_start: bool = False) -> tuple[str, str, str]:
    """A latent walk as a GIF; the size of the walk is checked before anything is sampled.
    With ``use_start``, the first keyframe is the latent handed over from Explore."""
    t0 = time.perf_counter()
    g, _ = models.get(name)
    keys = parse_seeds(str(seed_text or ""), "seeds", 64)
    n_steps = check_count("steps", steps, 2, MAX_FRAMES, "a whole number")
    rate = check_count("fps", fps, 1, 50, "a whole number")
    handoff = bool(use_start) and start is not None and start.get("model") == g.name
    frames = check_walk(len(keys) + handoff, n_steps, bool(loop), 1, g.info.img_resolution, g.info.img_channels,
                        max_frames=MAX_FRAMES)
    if handoff:
        assert start is not None
        psi_v = g.check_psi(psi)
        fixed = _class_arg(g, cls)
        z = np.concatenate([np.asarray(start["z"], np.float32)[None],
                            g.truncate(latents_for_seeds(list(keys), g.info.z_dim), psi_v)])
        labels = None
        if g.info.conditional and fixed is None:
            seed_labels = g.labels_for(list(keys), None)
            assert seed_labels is not None
            labels = np.concatenate([np.array([int(start["label"])], np.int64), seed_labels])
        res = interpolate(g, None, n_steps, method, bool(loop), psi_v, fixed, latents=z, labels=labels)
    else:
        res = interpolate(g, list(keys), n_steps, method, bool(loop), psi, _class_arg(g, cls))
    scale = max(1, 112 // g.info.img_resolution)
    path = cache_file("walk.gif", gif_bytes((f.repeat(scale, 0).repeat(scale, 1) for f in res.frames), rate))
    return path, path, _status(g, t0, f"{frames} frames")


def _explore_base(g: Generator, seed: Any, base: dict[str, Any] | None) -> tuple[np.ndarray, int | None]:
    """The latent being explored: a projected upload (``base``) or the seed's."""
    if base and base.get("model") == g.name:
        return np.asarray(base["z"], np.float32), base.get("label")
    s = check_count("seed", 0 if seed is None else seed, 0, MAX_SEED, "a whole number")
    labels = g.labels_for([s], None)  # the seed rule, as Generate applies it
    return latents_for_seeds([s], g.info.z_dim)[0], None if labels is None else int(labels[0])


def explore_latent(models: Models, name: str, seed: Any, base: dict[str, Any] | None, psi: Any, cls_a: str | None,
                   cls_b: str | None, blend: Any, *amounts: Any) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(z fed to the graph [z_dim], class weights [K] or None, note) for the Explore state."""
    g, _ = models.get(name)
    psi = g.check_psi(psi)
    z, label = _explore_base(g, seed, base)
    z = g.truncate(z[None], psi)[0]
    d = models.directions(name)
    moved = [float(a or 0.0) for a in amounts]
    if any(abs(a) > SLIDER_RANGE or a != a for a in moved):
        raise GansampleError(f"direction: amounts within +-{SLIDER_RANGE:g}")
    note = ""
    if isinstance(d, str):
        note = "no directions for this model"
    else:
        for k, a in enumerate(moved[:len(d)]):
            if a:
                z = z + np.float32(a) * d.vectors[k]
    weights = None
    if g.info.conditional:
        a_idx = g.class_index(cls_a, "cls") if cls_a and cls_a != BY_SEED else label
        b_idx = g.class_index(cls_b, "cls") if cls_b and cls_b != BY_SEED else a_idx
        t = float(blend or 0.0)
        if not 0.0 <= t <= 1.0:
            raise GansampleError(f"blend: got {blend!r}; a number in [0, 1]")
        assert a_idx is not None and b_idx is not None
        weights = np.zeros(g.info.num_classes, np.float32)
        weights[a_idx] += 1.0 - t
        weights[b_idx] += t
    return z.astype(np.float32), weights, note


def _render_latent(g: Generator, z: np.ndarray, weights: np.ndarray | None, psi: float) -> np.ndarray:
    if weights is None:
        return g.run(z[None], None, psi)[0]
    if np.count_nonzero(weights) == 1:  # one class: the plain graph, same pixels as Generate
        return g.run(z[None], np.array([int(np.argmax(weights))], np.int64), psi)[0]
    return g.run_mix(z[None], weights[None], psi)[0]


def explore(models: Models, name: str, seed: Any, base: dict[str, Any] | None, psi: Any, cls_a: str | None,
            cls_b: str | None, blend: Any, *amounts: Any) -> tuple[np.ndarray, str]:
    """The Explore image for the current controls (one sample: milliseconds)."""
    t0 = time.perf_counter()
    g, _ = models.get(name)
    z, weights, note = explore_latent(models, name, seed, base, psi, cls_a, cls_b, blend, *amounts)
    img = _render_latent(g, z, weights, g.check_psi(psi))
    src = str(base.get("note", "projected upload")) if base and base.get("model") == g.name else f"seed {int(seed or 0)}"
    big = _upscale(img, EXPLORE_SIZE)
    return (big[..., 0] if big.shape[2] == 1 else big), _status(g, t0, src + (f" · {note}" if note else ""))


def explore_upload(models: Models, name: str, path: Any) -> tuple[dict[str, Any] | None, str]:
    """Project an uploaded image; its latent becomes the Explore tab's starting point."""
    from .projection import features_for, load_targets, project
    if not path:
        return None, ""
    t0 = time.perf_counter()
    g, _ = models.get(name)
    target = load_targets([str(path)], g.info.img_resolution, g.info.img_channels, limit=1)[0]
    if target.image is None:
        raise GansampleError(f"image: {target.error}")
    p = project(g, target.image[None], features=features_for(g, None, models.device))
    notes = target.notes + p.notes
    what = f"projected upload (pixel RMSE {p.pixel_rmse[0]:.1f})" + (" · " + "; ".join(notes) if notes else "")
    base = {"model": g.name, "z": p.latents[0].tolist(), "label": None if p.labels is None else int(p.labels[0]),
            "note": what}
    return base, _status(g, t0, what)


def explore_handoff(models: Models, name: str, seed: Any, base: dict[str, Any] | None, psi: Any, cls_a: str | None,
                    cls_b: str | None, blend: Any, *amounts: Any) -> tuple[dict[str, Any], Any, Any, str]:
    """"Use this latent": hand the explored latent to the Interpolate tab as its first keyframe."""
    g, _ = models.get(name)
    z, weights, _ = explore_latent(models, name, seed, base, psi, cls_a, cls_b, blend, *amounts)
    label = None if weights is None else int(np.argmax(weights))
    msg = "the walk starts at the explored latent" + (
        " (its strongest class)" if weights is not None and np.count_nonzero(weights) > 1 else "")
    return ({"model": g.name, "z": z.tolist(), "label": label}, gr.Tabs(selected="interpolate"),
            gr.update(value=True), msg)


def score(models: Models, name: str, files: Any) -> tuple[list[list[Any]], str]:
    """Score uploaded files with D; unusable files get a line of their own."""
    t0 = time.perf_counter()
    g, d = models.get(name)
    if d is None:
        raise GansampleError(f"model {name!r} has no discriminator.onnx to score with")
    if not files:
        raise GansampleError("images: upload one or more image files to score")
    if len(files) > MAX_UPLOADS:
        raise GansampleError(f"images: got {len(files)} files; at most {MAX_UPLOADS} per request")
    paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files]
    res = d.score_files(paths)
    rows = []
    for r in res.sorted() + res.failed:
        label = d.info.class_names[r.label] if r.label is not None and d.info.class_names else ""
        rows.append([Path(r.path).name, "" if r.score is None else round(r.score, 4), label, r.error or "ok"])
    note = f"{len(res.scored)} scored" + (f", {len(res.failed)} not usable" if res.failed else "")
    return rows, _status(g, t0, note)


# --- layout -------------------------------------------------------------------------------------
def _generate_tab(models: Models, model: Any, cls_choices: list[str]) -> Any:
    with gr.Tab("Generate"):
        with gr.Row():
            seed_text = gr.Textbox(label="Seeds (e.g. 0-15 or 1,5,9; overrides start/count)", value="")
            start = gr.Number(label="Start seed", value=0, precision=0)
            count = gr.Number(label=f"Count (1-{MAX_COUNT})", value=16)
        with gr.Row():
            psi = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Truncation psi")
            cls = gr.Dropdown(cls_choices, value=BY_SEED, label="Class")
            sort = gr.Dropdown(list(SORTS), value=SORTS[0], label="Order")
            min_score = gr.Textbox(label="Hide D score below (empty: show all)", value="")
        btn = gr.Button("Generate", variant="primary", elem_id="generate-btn")
        gallery = gr.Gallery(label="Samples", columns=8, height="auto", format="png", elem_id="gallery")
        zip_out = gr.File(label="PNG files (zip)")
        status = gr.Markdown(elem_id="generate-status")
    btn.click(partial(_ui_errors(generate), models), [model, seed_text, start, count, psi, cls, sort, min_score],
              [gallery, zip_out, status], api_name="generate")
    return cls


def _interpolate_tab(models: Models, model: Any, cls_choices: list[str], start: Any) -> tuple[Any, Any, Any]:
    with gr.Tab("Interpolate", id="interpolate"):
        with gr.Row():
            seeds = gr.Textbox(label="Keyframe seeds", value="3,17,42")
            steps = gr.Slider(2, 60, value=24, step=1, label="Frames per transition")
            method = gr.Radio(["slerp", "lerp"], value="slerp", label="Method")
            loop = gr.Checkbox(value=True, label="Loop")
        with gr.Row():
            psi = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Truncation psi")
            cls = gr.Dropdown(cls_choices, value=BY_SEED, label="Class")
            fps = gr.Slider(1, 50, value=20, step=1, label="Frames per second")
        use_start = gr.Checkbox(value=False, label="Start at the latent from Explore", elem_id="use-start")
        btn = gr.Button("Interpolate", variant="primary", elem_id="interpolate-btn")
        anim = gr.Image(label="Animation", type="filepath", elem_id="animation")
        anim_file = gr.File(label="GIF download")
        status = gr.Markdown(elem_id="interpolate-status")
    btn.click(partial(_ui_errors(walk), models), [model, seeds, steps, method, loop, psi, cls, fps, start, use_start],
              [anim, anim_file, status], api_name="interpolate")
    return cls, use_start, status


def _explore_tab(models: Models, model: Any, cls_choices: list[str]) -> tuple[Any, Any]:
    d = models.directions(model.value)
    with gr.Tab("Explore", id="explore"):
        base = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                seed = gr.Number(label="Seed", value=0, precision=0, elem_id="explore-seed")
                upload = gr.Image(type="filepath", label="Or start from an image (projected on upload)",
                                  sources=["upload"], elem_id="explore-upload", height=160)
                psi = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Truncation psi")
                cls_a = gr.Dropdown(cls_choices, value=BY_SEED, label="Class")
                cls_b = gr.Dropdown(cls_choices, value=BY_SEED, label="Blend towards class")
                blend = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Class blend")
            with gr.Column(scale=1):
                sliders = [gr.Slider(-SLIDER_RANGE, SLIDER_RANGE, value=0.0, step=0.1,
                                     label=f"Direction {k}" + (f" ({d.explained[k]:.1%} of the variance)"
                                                               if not isinstance(d, str) and k < len(d) else ""),
                                     elem_id=f"direction-{k}") for k in range(N_SLIDERS)]
                reset = gr.Button("Reset directions", elem_id="explore-reset")
                handoff = gr.Button("Use this latent in Interpolate", elem_id="explore-handoff")
            with gr.Column(scale=1):
                image = gr.Image(label="Sample", type="numpy", format="png", interactive=False,
                                 elem_id="explore-image", height=EXPLORE_SIZE + 16)
                status = gr.Markdown(elem_id="explore-status")
    controls = [model, seed, base, psi, cls_a, cls_b, blend, *sliders]
    show = partial(_ui_errors(explore), models)
    # .input fires while a slider is dragged; always_last drops stale positions under load.
    for slider in (*sliders, psi, blend):
        slider.input(show, controls, [image, status], trigger_mode="always_last", show_progress="hidden")
    for field in (seed, cls_a, cls_b):
        field.change(show, controls, [image, status], show_progress="hidden")
    seed.change(lambda: None, None, base)
    upload.upload(partial(_ui_errors(explore_upload), models), [model, upload], [base, status]).then(
        show, controls, [image, status])
    reset.click(lambda: [0.0] * N_SLIDERS, None, sliders).then(show, controls, [image, status])
    return (cls_a, cls_b), (show, controls, image, status, handoff)


def _score_tab(models: Models, model: Any) -> None:
    with gr.Tab("Score"):
        uploads = gr.File(file_count="multiple", label="Images to score", elem_id="score-upload")
        btn = gr.Button("Score", variant="primary", elem_id="score-btn")
        table = gr.Dataframe(headers=["file", "D score", "class", "status"], label="Scores (best first)",
                             elem_id="score-table", interactive=False)
        status = gr.Markdown(elem_id="score-status")
    btn.click(partial(_ui_errors(score), models), [model, uploads], [table, status], api_name="score")


def build(models: Models, default: str) -> gr.Blocks:
    g0, _ = models.get(default)
    cls_choices = [BY_SEED] + (g0.class_names if g0.info.conditional else [])
    with gr.Blocks(title="gansample", analytics_enabled=False, delete_cache=(60, CACHE_AGE)) as demo:
        gr.Markdown("# gansample\nSample, explore and judge a GAN: the generator makes images, "
                    "the discriminator says how real they look (higher D score = more real).")
        model = gr.Dropdown(models.names(), value=default, label="Model")
        start = gr.State(None)  # a latent handed from Explore to Interpolate
        with gr.Tabs() as tabs:
            cls = _generate_tab(models, model, cls_choices)
            e_cls, (show, controls, image, e_status, handoff) = _explore_tab(models, model, cls_choices)
            w_cls, use_start, w_status = _interpolate_tab(models, model, cls_choices, start)
            _score_tab(models, model)
        handoff.click(partial(_ui_errors(explore_handoff), models), controls, [start, tabs, use_start, e_status])
        model.change(partial(_ui_errors(on_model), models), model, [cls, w_cls, *e_cls]).then(
            show, controls, [image, e_status])
        demo.load(show, controls, [image, e_status])
    return demo


# System fonts only: the default theme would fetch web fonts from the internet.
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                          font_mono=["ui-monospace", "monospace"])


def serve(a: argparse.Namespace) -> int:
    """Build and launch the demo for the options that `gansample app` parsed and checked
    (gansample.commands.app: --help and bad values never import gradio)."""
    try:
        models = Models(a.model, a.device)
        default = a.default or (DEFAULT_MODEL if DEFAULT_MODEL in models.paths else models.names()[0])
        if default not in models.paths:
            raise GansampleError(f"default: got {str(default)[:100]!r}; the demo's models are: "
                                 f"{', '.join(models.names())}", "default")
        demo = build(models, default)
    except GansampleError as e:
        print(f"gansample app: error: {e.renamed({'model': '--model', 'device': '--device', 'default': '--default'})}",
              file=sys.stderr)
        return 2
    g, _ = models.get(default)
    print(f"gansample app: model {default} on {g.provider}", file=sys.stderr)
    demo.queue(default_concurrency_limit=a.concurrency, max_size=a.queue_size)
    demo.launch(server_name=a.host, server_port=a.port, theme=THEME, show_error=True,
                footer_links=["api"], quiet=True, max_file_size=MAX_UPLOAD_BYTES)
    return 0
