"""The Gradio demo, started for real and driven in headless Chromium and by gradio_client."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from conftest import FASHION_DIR

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian dataset-fashion-mnist not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gradio_tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("gradio-tmp")


@pytest.fixture(scope="module")
def app_server(tmp_path_factory, gradio_tmp):
    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = {**os.environ, "GRADIO_TEMP_DIR": str(gradio_tmp)}
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--device", "cpu"],
                                stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("app exited: " + log.read_text())
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("app did not start: " + log.read_text())
    yield url, proc
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def app_url(app_server):
    return app_server[0]


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory):
    from gansample import datasets
    d = tmp_path_factory.mktemp("uploads")
    x, _ = datasets.load_standard("fashion-mnist", "test")
    paths = []
    for i in range(3):
        p = d / f"real{i}.png"
        Image.fromarray(x[i]).save(p)
        paths.append(p)
    bad = d / "notes.txt"
    bad.write_text("not an image")
    return paths, bad


@pytest.fixture(scope="module")
def page(app_url):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--headless", "--no-sandbox", "--disable-gpu",
                                          "--disable-background-networking", "--disable-component-update",
                                          "--no-first-run", "--disable-sync"])
        pg = browser.new_page(viewport={"width": 1280, "height": 1000})
        pg.goto(app_url)
        pg.wait_for_selector("#generate-btn", timeout=60_000)
        yield pg
        browser.close()


def _shot(page, name: str) -> None:
    folder = os.environ.get("GANSAMPLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def test_browser_generate_shows_images_and_provider(page):
    page.click("#generate-btn")
    page.wait_for_function("document.querySelectorAll('#gallery img').length >= 16", timeout=60_000)
    status = page.locator("#generate-status").inner_text(timeout=30_000)
    assert "CPUExecutionProvider" in status and "16 images" in status
    assert "seed 0" in page.locator("#gallery").inner_text()
    _shot(page, "generate")


def test_browser_interpolate_shows_animation(page):
    page.get_by_role("tab", name="Interpolate").click()
    page.click("#interpolate-btn")
    page.wait_for_selector("#animation img", timeout=60_000)
    assert "frames" in page.locator("#interpolate-status").inner_text(timeout=30_000)
    _shot(page, "interpolate")


def test_browser_upload_and_score(page, sample_files):
    files, bad = sample_files
    page.get_by_role("tab", name="Score").click()
    page.locator("#score-upload input[type=file]").set_input_files([str(p) for p in files] + [str(bad)])
    page.wait_for_timeout(1000)
    page.click("#score-btn")
    page.get_by_text("3 scored, 1 not usable").wait_for(timeout=60_000)
    table = page.locator("#score-table").inner_text()
    assert "real0.png" in table and "notes.txt" in table and "not an image" in table
    _shot(page, "score")


def _explore_src(page) -> str:
    return page.locator("#explore-image img").get_attribute("src", timeout=30_000) or ""


def test_browser_explore_slider_changes_the_image(page):
    """Moving a direction slider (keyboard on the range input, as a user would) updates
    the image while it moves; the round trip is printed for the closing note."""
    page.get_by_role("tab", name="Explore").click()
    page.wait_for_selector("#explore-image img", timeout=60_000)
    before = _explore_src(page)
    slider = page.locator("#direction-0 input[type=range]")
    times = []
    for _ in range(5):
        src = _explore_src(page)
        t0 = time.perf_counter()
        slider.focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_function(
            "prev => { const i = document.querySelector('#explore-image img'); return i && i.src !== prev; }",
            arg=src, timeout=30_000)
        times.append(time.perf_counter() - t0)
    assert _explore_src(page) != before
    assert float(page.locator("#direction-0 input[type=number]").input_value()) == pytest.approx(0.5)
    times.sort()
    print(f"\nexplore slider -> image round trip: median {times[2] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms")
    assert "seed 0" in page.locator("#explore-status").inner_text()
    _shot(page, "explore")


def test_browser_explore_upload_projects_and_hands_off(page, sample_files):
    files, _ = sample_files
    page.get_by_role("tab", name="Explore").click()
    src = _explore_src(page)
    page.locator("#explore-upload input[type=file]").set_input_files(str(files[0]))
    page.get_by_text("projected upload (pixel RMSE").first.wait_for(timeout=60_000)
    page.wait_for_function(
        "prev => { const i = document.querySelector('#explore-image img'); return i && i.src !== prev; }",
        arg=src, timeout=30_000)
    page.click("#explore-handoff")
    page.wait_for_selector("#interpolate-btn", state="visible", timeout=30_000)
    page.wait_for_function("document.querySelector('#use-start input[type=checkbox]').checked", timeout=30_000)
    page.click("#interpolate-btn")
    # Keyframes 3,17,42 after the handed-over latent, looped: 4 transitions of 24 frames
    # (the earlier walk from the seeds alone had 72).
    page.locator("#interpolate-status").get_by_text("96 frames").wait_for(timeout=60_000)
    page.locator("#use-start input[type=checkbox]").uncheck()


def test_browser_bad_count_shows_message(page):
    page.get_by_role("tab", name="Generate").click()
    count = page.get_by_label("Count (1-256)")
    count.fill("0")
    page.click("#generate-btn")
    page.get_by_text("count: got 0").first.wait_for(timeout=30_000)
    count.fill("16")
    # A non-image upload gets a readable line in the Score table (checked in the upload test).


def test_api_endpoints_with_gradio_client(app_url, sample_files):
    client_mod = pytest.importorskip("gradio_client")
    c = client_mod.Client(app_url, verbose=False)
    gallery, zip_path, status = c.predict("fashion-mnist", "", 0, 8, 1.0, "(from the seed)",
                                          "D score: best first", "", api_name="/generate")
    assert len(gallery) == 8 and "8 images" in status
    scores = [float(item["caption"].rsplit("D ", 1)[1]) for item in gallery]
    assert scores == sorted(scores, reverse=True)
    import zipfile
    with zipfile.ZipFile(zip_path) as z:
        assert len([n for n in z.namelist() if n.endswith(".png")]) == 8 and "manifest.csv" in z.namelist()
    anim, gif, status = c.predict("fashion-mnist", "1,2", 5, "slerp", False, 1.0, "(from the seed)", 10,
                                  api_name="/interpolate")
    assert Image.open(gif).n_frames == 6
    files, bad = sample_files
    table, status = c.predict("fashion-mnist", [client_mod.handle_file(str(p)) for p in files],
                              api_name="/score")
    assert len(table["data"]) == 3 and all(isinstance(r[1], (int, float)) for r in table["data"])
    with pytest.raises(Exception, match="at most 256"):
        c.predict("fashion-mnist", "0-999", 0, 8, 1.0, "(from the seed)", "seed", "", api_name="/generate")


def test_gansample_app_command_forwards_options():
    exe = Path(sys.executable).parent / "gansample"
    out = subprocess.run([str(exe), "app", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--port" in out.stdout and "--host" in out.stdout
    bad = subprocess.run([str(exe), "app", "--model", "/nonexistent/model"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "--model: unknown model '/nonexistent/model'" in bad.stderr


# --- under load and against hostile requests ------------------------------------------------------
def _rss(pid: int) -> tuple[float, float]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from load_app import rss_mb
    return rss_mb(pid)


def test_huge_seed_range_is_refused_without_memory(app_server) -> None:
    client_mod = pytest.importorskip("gradio_client")
    url, proc = app_server
    c = client_mod.Client(url, verbose=False)
    c.predict("fashion-mnist", "0-3", 0, 4, 1.0, "(from the seed)", "seed", "", api_name="/generate")  # warm
    before = _rss(proc.pid)
    for text in ("0-100000000", "0-4294967295", "1," * 4000 + "2"):
        with pytest.raises(Exception, match="Seeds: got"):
            c.predict("fashion-mnist", text, 0, 8, 1.0, "(from the seed)", "seed", "", api_name="/generate")
    after = _rss(proc.pid)
    assert after[0] - before[0] < 50 and after[1] - before[1] < 50, (before, after)


def _raw_call(url: str, api: str, body: str) -> str:
    """POST a hand-written JSON body to gradio's HTTP API (NaN included, which JSON
    clients refuse to send) and return the event stream of the answer."""
    import json
    req = urllib.request.Request(f"{url}gradio_api/call/{api}", data=body.encode(),
                                 headers={"Content-Type": "application/json"})
    event = json.loads(urllib.request.urlopen(req, timeout=30).read())["event_id"]
    return urllib.request.urlopen(f"{url}gradio_api/call/{api}/{event}", timeout=60).read().decode()


def test_nan_and_fractions_in_number_fields_name_the_field(app_url) -> None:
    for count, needle in (("NaN", "count: got nan"), ("2.5", "count: got 2.5"), ("1e12", "count: got"),
                          ("Infinity", "count: got inf")):
        body = f'{{"data": ["fashion-mnist", "", 0, {count}, 1.0, "(from the seed)", "seed", ""]}}'
        stream = _raw_call(app_url, "generate", body)
        assert "event: error" in stream and needle in stream, stream
    stream = _raw_call(app_url, "generate", '{"data": ["fashion-mnist", "", -5, 4, 1.0, "(from the seed)", "seed", ""]}')
    assert "start seed: got -5" in stream, stream
    stream = _raw_call(app_url, "generate", '{"data": ["fashion-mnist", "", 0, 4, NaN, "(from the seed)", "seed", ""]}')
    assert "Truncation psi: got nan" in stream, stream


def test_palette_bomb_upload_is_refused_cheaply(app_server, tmp_path) -> None:
    client_mod = pytest.importorskip("gradio_client")
    url, proc = app_server
    bombs = []
    for i in range(3):
        p = tmp_path / f"bomb{i}.png"
        Image.new("P", (7999, 7999), i).save(p, optimize=True)
        bombs.append(p)
    c = client_mod.Client(url, verbose=False)
    before = _rss(proc.pid)
    table, status = c.predict("fashion-mnist", [client_mod.handle_file(str(p)) for p in bombs], api_name="/score")
    after = _rss(proc.pid)
    assert "3 not usable" in status and all("too large" in r[3] for r in table["data"]), table
    assert after[1] - before[1] < 50, (before, after)


@pytest.mark.slow  # a load test (benchmarks/load_app.py measures load)
def test_twenty_concurrent_identical_clients(app_server, gradio_tmp) -> None:
    pytest.importorskip("gradio_client")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from load_app import run_load
    url, proc = app_server
    zips_before = set((gradio_tmp / "gansample").glob("*.zip")) if (gradio_tmp / "gansample").is_dir() else set()
    r = run_load(url, clients=20, seconds=12)
    assert r["requests"] >= 20 and not r["errors"], r["errors"][:5]
    assert proc.poll() is None
    # Nothing half-written or temporary is left, and identical requests share their files.
    files = [p for p in gradio_tmp.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.endswith(".gansample-tmp") or p.name.startswith(".")], files[:5]
    new_zips = set((gradio_tmp / "gansample").glob("*.zip")) - zips_before
    assert len(new_zips) <= 1, new_zips  # identical requests share one file
    # One flat folder: gradio's sweep removes files only, so no per-file folders may pile up.
    assert not [p for p in (gradio_tmp / "gansample").iterdir() if p.is_dir()]


def test_manifest_round_trips_odd_class_names(odd_model, tmp_path) -> None:
    """Class names with a comma, a quote and non-ASCII letters survive generate's manifest
    and the app's zip, read back with csv."""
    import csv
    import io
    import zipfile

    from conftest import run_cli
    names = ODD_NAMES
    out = tmp_path / "o"
    assert run_cli("generate", "-n", "4", "--model", odd_model, "--outdir", out, "-q") == 0
    rows = list(csv.DictReader((out / "manifest.csv").open(encoding="utf-8")))
    assert [r["class_name"] for r in rows] == [names[s % 2] for s in range(4)]
    from gansample import ui
    models = ui.Models([str(odd_model)], "cpu")
    name = next(n for n, spec in models.paths.items() if spec == str(odd_model))
    items, zip_path, status = ui.generate(models, name, "0-3", 0, 4, 1.0, ui.BY_SEED, ui.SORTS[0], "")
    with zipfile.ZipFile(zip_path) as z:
        text = z.read("manifest.csv").decode("utf-8")
    zrows = list(csv.DictReader(io.StringIO(text)))
    assert [r["class_name"] for r in zrows] == [names[s % 2] for s in range(4)]
    assert [r["file"] for r in zrows] == [f"seed{s:04d}.png" for s in range(4)]
    assert all(names[s % 2] in cap for s, (_, cap) in enumerate(items))


ODD_NAMES = ['shirt, "striped"', "Ünïcødé ß 衬衫"]


@pytest.fixture
def odd_model(tiny_model, tmp_path):
    import onnx

    from gansample import metadata as md
    dst = tmp_path / "odd"
    shutil.copytree(tiny_model, dst)
    for f in dst.glob("*.onnx"):
        m = onnx.load(str(f))
        info = md.read_onnx(m)
        info.class_names = list(ODD_NAMES)
        md.write(m, info)
        onnx.save(m, str(f))
    return dst


def test_ui_callbacks_check_sizes_before_work() -> None:
    from gansample import GansampleError, ui
    with pytest.raises(GansampleError, match="at most 256 seeds"):
        ui.request_seeds("0-100000000", 0, 16)
    with pytest.raises(GansampleError, match="count: got nan"):
        ui.request_seeds("", 0, float("nan"))
    assert ui.request_seeds("", 5, 3.0) == [5, 6, 7]


def test_explore_callbacks_check_their_inputs(tmp_path) -> None:
    """Explore's controls come from the browser as raw numbers: bad ones are named, the
    sliders at 0 give exactly the Generate image, and a non-image upload is refused."""
    from gansample import GansampleError, Generator, ui
    models = ui.Models([], "cpu")
    name = ui.DEFAULT_MODEL
    zeros = [0.0] * ui.N_SLIDERS
    img, status = ui.explore(models, name, 7, None, 1.0, None, None, 0.0, *zeros)
    plain = Generator(name, device="cpu").sample(seeds=[7]).images[0, :, :, 0]
    k = ui.EXPLORE_SIZE // plain.shape[0]
    assert (img[::k, ::k] == plain).all() and "seed 7" in status
    moved, _ = ui.explore(models, name, 7, None, 1.0, None, None, 0.0, 2.0, *zeros[1:])
    assert (moved != img).any()
    with pytest.raises(GansampleError, match="seed: got -1"):
        ui.explore(models, name, -1, None, 1.0, None, None, 0.0, *zeros)
    with pytest.raises(GansampleError, match="direction"):
        ui.explore(models, name, 7, None, 1.0, None, None, 0.0, float("nan"), *zeros[1:])
    with pytest.raises(GansampleError, match="blend: got 2"):
        ui.explore(models, name, 7, None, 1.0, "Coat", "Bag", 2, *zeros)
    (tmp_path / "x.png").write_text("not an image")
    with pytest.raises(GansampleError, match="image: not an image"):
        ui.explore_upload(models, name, str(tmp_path / "x.png"))
