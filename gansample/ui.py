"""gansample web demo: generate, interpolate and score in the browser.

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
from .interpolation import check_walk, gif_bytes, interpolate  # noqa: E402
from .latents import MAX_SEED, parse_seeds  # noqa: E402
from .output import atomic_write, seed_filename, zip_bytes  # noqa: E402
from .registry import DEFAULT_MODEL, GENERATOR_FILES  # noqa: E402

MAX_COUNT = 256  # images per Generate request
MAX_FRAMES = 600  # frames per Interpolate request
MAX_UPLOADS = 64  # files per Score request
MAX_UPLOAD_BYTES = 16 * 2**20  # per uploaded file (gradio refuses larger ones before they are stored)
CACHE_AGE = 600  # seconds before gradio's delete_cache removes a file this app produced
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
def on_model(models: Models, name: str) -> tuple[Any, Any]:
    g, _ = models.get(name)
    choices = [BY_SEED] + g.class_names if g.info.conditional else [BY_SEED]
    return gr.update(choices=choices, value=BY_SEED), gr.update(choices=choices, value=BY_SEED)


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
         cls: str | None, fps: Any) -> tuple[str, str, str]:
    """A latent walk as a GIF; the size of the walk is checked before anything is sampled."""
    t0 = time.perf_counter()
    g, _ = models.get(name)
    keys = parse_seeds(str(seed_text or ""), "seeds", 64)
    n_steps = check_count("steps", steps, 2, MAX_FRAMES, "a whole number")
    rate = check_count("fps", fps, 1, 50, "a whole number")
    frames = check_walk(len(keys), n_steps, bool(loop), 1, g.info.img_resolution, g.info.img_channels,
                        max_frames=MAX_FRAMES)
    res = interpolate(g, list(keys), n_steps, method, bool(loop), psi, _class_arg(g, cls))
    scale = max(1, 112 // g.info.img_resolution)
    path = cache_file("walk.gif", gif_bytes((f.repeat(scale, 0).repeat(scale, 1) for f in res.frames), rate))
    return path, path, _status(g, t0, f"{frames} frames")


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


def _interpolate_tab(models: Models, model: Any, cls_choices: list[str]) -> Any:
    with gr.Tab("Interpolate"):
        with gr.Row():
            seeds = gr.Textbox(label="Keyframe seeds", value="3,17,42")
            steps = gr.Slider(2, 60, value=24, step=1, label="Frames per transition")
            method = gr.Radio(["slerp", "lerp"], value="slerp", label="Method")
            loop = gr.Checkbox(value=True, label="Loop")
        with gr.Row():
            psi = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Truncation psi")
            cls = gr.Dropdown(cls_choices, value=BY_SEED, label="Class")
            fps = gr.Slider(1, 50, value=20, step=1, label="Frames per second")
        btn = gr.Button("Interpolate", variant="primary", elem_id="interpolate-btn")
        anim = gr.Image(label="Animation", type="filepath", elem_id="animation")
        anim_file = gr.File(label="GIF download")
        status = gr.Markdown(elem_id="interpolate-status")
    btn.click(partial(_ui_errors(walk), models), [model, seeds, steps, method, loop, psi, cls, fps],
              [anim, anim_file, status], api_name="interpolate")
    return cls


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
        cls = _generate_tab(models, model, cls_choices)
        w_cls = _interpolate_tab(models, model, cls_choices)
        _score_tab(models, model)
        model.change(partial(_ui_errors(on_model), models), model, [cls, w_cls])
    return demo


# System fonts only: the default theme would fetch web fonts from the internet.
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                          font_mono=["ui-monospace", "monospace"])


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gansample app", description="Start the gansample web demo.",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--port", type=int, default=7860, help="port to listen on")
    ap.add_argument("--model", action="append", default=[], help="extra model folder or .onnx (repeatable)")
    ap.add_argument("--default", default=None, help="model selected at start (none: fashion-mnist)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="execution device")
    ap.add_argument("--concurrency", type=int, default=2, help="requests processed at once")
    ap.add_argument("--queue-size", type=int, default=64, help="waiting requests before 'queue full'")
    a = ap.parse_args(argv)
    try:
        check_count("--concurrency", a.concurrency, 1, 64)
        check_count("--queue-size", a.queue_size, 1, 10_000)
        check_count("--port", a.port, 1, 65535)
        models = Models(a.model, a.device)
        default = a.default or (DEFAULT_MODEL if DEFAULT_MODEL in models.paths else models.names()[0])
        demo = build(models, default)
    except GansampleError as e:
        print(f"gansample app: error: {e.renamed({'model': '--model', 'device': '--device'})}", file=sys.stderr)
        return 2
    g, _ = models.get(default)
    print(f"gansample app: model {default} on {g.provider}", file=sys.stderr)
    demo.queue(default_concurrency_limit=a.concurrency, max_size=a.queue_size)
    demo.launch(server_name=a.host, server_port=a.port, theme=THEME, show_error=True,
                footer_links=["api"], quiet=True, max_file_size=MAX_UPLOAD_BYTES)
    return 0
