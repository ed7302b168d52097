"""gansample web demo: generate, interpolate and score in the browser.

    python app.py [--model NAME_OR_FOLDER ...] [--host 127.0.0.1] [--port 7860] [--device auto]

Every callback only calls gansample's Python API. Works offline: no external fonts,
scripts or analytics.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from gansample import Discriminator, GansampleError, Generator, available_models  # noqa: E402
from gansample.images import encode_png, to_pil  # noqa: E402
from gansample.interpolation import interpolate, save  # noqa: E402
from gansample.latents import parse_seeds  # noqa: E402
from gansample.registry import DEFAULT_MODEL  # noqa: E402

MAX_COUNT = 256  # images per Generate request
MAX_FRAMES = 600  # frames per Interpolate request
MAX_UPLOADS = 64  # files per Score request
BY_SEED = "(from the seed)"
SORTS = ("seed", "D score: best first", "D score: worst first")


class Models:
    """Generator/discriminator pairs, built once per model and shared by all requests."""

    def __init__(self, extra: list[str], device: str) -> None:
        self.device = device
        self.paths: dict[str, str] = {name: str(p) for name, p in available_models().items()
                                      if (Path(p) / "generator.onnx").exists()}
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
                    raise gr.Error(f"model: got {name!r}; available: {', '.join(self.names())}")
                g = Generator(self.paths[name], device=self.device)
                try:
                    d: Discriminator | None = Discriminator(self.paths[name], device=self.device)
                except GansampleError:
                    d = None
                self._cache[name] = (g, d)
            return self._cache[name]


def _status(g: Generator, t0: float, extra: str = "") -> str:
    return f"**{g.provider}** · {time.perf_counter() - t0:.2f} s" + (f" · {extra}" if extra else "")


def _class_arg(g: Generator, cls: str | None) -> str | None:
    return None if not cls or cls == BY_SEED or not g.info.conditional else cls


def _seeds(seed_text: str, start: float | None, count: float | None) -> list[int]:
    if seed_text and seed_text.strip():
        seeds = parse_seeds(seed_text)
    else:
        if count is None or int(count) != count or not 1 <= count <= MAX_COUNT:
            raise GansampleError(f"count: got {count!r}; a whole number from 1 to {MAX_COUNT}")
        first = int(start or 0)
        if first < 0:
            raise GansampleError(f"start seed: got {first}; a seed >= 0")
        seeds = list(range(first, first + int(count)))
    if len(seeds) > MAX_COUNT:
        raise GansampleError(f"seeds: got {len(seeds)} seeds; at most {MAX_COUNT} per request")
    return seeds


def _upscale(img: np.ndarray, size: int = 112) -> Any:
    k = max(1, size // img.shape[0])
    return to_pil(img.repeat(k, 0).repeat(k, 1))


def build(models: Models, default: str) -> gr.Blocks:
    def on_model(name: str):
        g, _ = models.get(name)
        choices = [BY_SEED] + g.class_names if g.info.conditional else [BY_SEED]
        return gr.update(choices=choices, value=BY_SEED), gr.update(choices=choices, value=BY_SEED)

    def generate(name, seed_text, start, count, psi, cls, sort, min_score):
        t0 = time.perf_counter()
        try:
            g, d = models.get(name)
            seeds = _seeds(seed_text, start, count)
            res = g.sample(seeds=seeds, psi=psi, cls=_class_arg(g, cls))
        except GansampleError as e:
            raise gr.Error(str(e)) from None
        scores = d.logits(res.images, res.labels) if d is not None else None
        order = list(range(len(seeds)))
        if scores is not None and sort != SORTS[0]:
            order = sorted(order, key=lambda i: -scores[i] if sort == SORTS[1] else scores[i])
        if scores is not None and str(min_score or "").strip():
            try:
                threshold = float(min_score)
            except ValueError:
                raise gr.Error(f"hide D score below: got {min_score!r}; a number, or empty to show all") from None
            order = [i for i in order if scores[i] >= threshold]
        names = g.class_names
        items = []
        for i in order:
            cap = f"seed {seeds[i]}"
            if res.labels is not None:
                cap += f" · {names[res.labels[i]]}"
            if scores is not None:
                cap += f" · D {scores[i]:+.2f}"
            items.append((_upscale(res.images[i]), cap))
        zpath = Path(tempfile.mkdtemp(prefix="gansample-")) / f"{g.name}-seeds.zip"
        with zipfile.ZipFile(zpath, "w") as z:
            rows = ["seed,class,d_score,file"]
            for i in order:
                fname = f"seed{seeds[i]:04d}.png"
                z.writestr(fname, encode_png(res.images[i], 6))
                label = "" if res.labels is None else names[res.labels[i]]
                rows.append(f"{seeds[i]},{label},{'' if scores is None else f'{scores[i]:.6f}'},{fname}")
            z.writestr("manifest.csv", "\n".join(rows) + "\n")
        shown = f"{len(items)} of {len(seeds)} images" if len(items) != len(seeds) else f"{len(items)} images"
        return items, str(zpath), _status(g, t0, shown)

    def walk(name, seed_text, steps, method, loop, psi, cls, fps):
        t0 = time.perf_counter()
        try:
            g, _ = models.get(name)
            n_keys = len(parse_seeds(seed_text))
            if steps is None or int(steps) != steps:
                raise GansampleError(f"steps: got {steps!r}; a whole number >= 2")
            frames = (n_keys if loop else n_keys - 1) * int(steps) + (0 if loop else 1)
            if frames > MAX_FRAMES:
                raise GansampleError(f"seeds/steps: {frames} frames requested; at most {MAX_FRAMES}")
            res = interpolate(g, seed_text, int(steps), method, bool(loop), psi, _class_arg(g, cls))
        except GansampleError as e:
            raise gr.Error(str(e)) from None
        out = Path(tempfile.mkdtemp(prefix="gansample-")) / "walk.gif"
        save(res, str(out), fps=float(fps), scale=max(1, 112 // g.info.img_resolution))
        return str(out), str(out), _status(g, t0, f"{len(res)} frames")

    def score(name, files):
        t0 = time.perf_counter()
        g, d = models.get(name)
        if d is None:
            raise gr.Error(f"model {name!r} has no discriminator.onnx to score with")
        if not files:
            raise gr.Error("images: upload one or more image files to score")
        if len(files) > MAX_UPLOADS:
            raise gr.Error(f"images: got {len(files)} files; at most {MAX_UPLOADS} per request")
        paths = [f if isinstance(f, str) else f.name for f in files]
        res = d.score_files(paths)
        rows = []
        for r in res.sorted() + res.failed:
            label = d.info.class_names[r.label] if r.label is not None and d.info.class_names else ""
            rows.append([Path(r.path).name, "" if r.score is None else round(r.score, 4), label,
                         r.error or "ok"])
        note = f"{len(res.scored)} scored" + (f", {len(res.failed)} not usable" if res.failed else "")
        return rows, _status(g, t0, note)

    g0, _ = models.get(default)
    cls_choices = [BY_SEED] + (g0.class_names if g0.info.conditional else [])
    with gr.Blocks(title="gansample", analytics_enabled=False) as demo:
        gr.Markdown("# gansample\nSample, explore and judge a GAN: the generator makes images, "
                    "the discriminator says how real they look (higher D score = more real).")
        model = gr.Dropdown(models.names(), value=default, label="Model")
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
            gen_btn = gr.Button("Generate", variant="primary", elem_id="generate-btn")
            gallery = gr.Gallery(label="Samples", columns=8, height="auto", format="png", elem_id="gallery")
            zip_out = gr.File(label="PNG files (zip)")
            gen_status = gr.Markdown(elem_id="generate-status")
        with gr.Tab("Interpolate"):
            with gr.Row():
                w_seeds = gr.Textbox(label="Keyframe seeds", value="3,17,42")
                steps = gr.Slider(2, 60, value=24, step=1, label="Frames per transition")
                method = gr.Radio(["slerp", "lerp"], value="slerp", label="Method")
                loop = gr.Checkbox(value=True, label="Loop")
            with gr.Row():
                w_psi = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Truncation psi")
                w_cls = gr.Dropdown(cls_choices, value=BY_SEED, label="Class")
                fps = gr.Slider(1, 50, value=20, step=1, label="Frames per second")
            walk_btn = gr.Button("Interpolate", variant="primary", elem_id="interpolate-btn")
            anim = gr.Image(label="Animation", type="filepath", elem_id="animation")
            anim_file = gr.File(label="GIF download")
            walk_status = gr.Markdown(elem_id="interpolate-status")
        with gr.Tab("Score"):
            uploads = gr.File(file_count="multiple", label="Images to score", elem_id="score-upload")
            score_btn = gr.Button("Score", variant="primary", elem_id="score-btn")
            table = gr.Dataframe(headers=["file", "D score", "class", "status"], label="Scores (best first)",
                                 elem_id="score-table", interactive=False)
            score_status = gr.Markdown(elem_id="score-status")
        model.change(on_model, model, [cls, w_cls])
        gen_btn.click(generate, [model, seed_text, start, count, psi, cls, sort, min_score],
                      [gallery, zip_out, gen_status], api_name="generate")
        walk_btn.click(walk, [model, w_seeds, steps, method, loop, w_psi, w_cls, fps],
                       [anim, anim_file, walk_status], api_name="interpolate")
        score_btn.click(score, [model, uploads], [table, score_status], api_name="score")
    return demo


# System fonts only: the default theme would fetch web fonts from the internet.
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                          font_mono=["ui-monospace", "monospace"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gansample app", description="Start the gansample web demo.")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=7860)
    ap.add_argument("--model", action="append", default=[], help="extra model folder or .onnx (repeatable)")
    ap.add_argument("--default", default=None, help="model selected at start (default: fashion-mnist)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--concurrency", type=int, default=2, help="requests processed at once")
    ap.add_argument("--queue-size", type=int, default=16, help="waiting requests before 'queue full'")
    a = ap.parse_args(argv)
    try:
        models = Models(a.model, a.device)
        default = a.default or (DEFAULT_MODEL if DEFAULT_MODEL in models.paths else models.names()[0])
        demo = build(models, default)
    except GansampleError as e:
        print(f"gansample app: error: {e}", file=sys.stderr)
        return 2
    g, _ = models.get(default)
    print(f"gansample app: model {default} on {g.provider}", file=sys.stderr)
    demo.queue(default_concurrency_limit=a.concurrency, max_size=a.queue_size)
    demo.launch(server_name=a.host, server_port=a.port, theme=THEME, show_error=True,
                footer_links=["api"], quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
