"""A real colour dataset that installs offline: the Noto emoji images of the npm package
``emoji-datasource-google`` (3,786 PNGs of 64x64 RGBA, skin-tone variants included),
written as an image folder with one sub-folder per category, ready for
``gansample train --data FOLDER --conditional``.

    python -m gansample.training.emoji --out data/emoji            # runs `npm pack` itself
    python -m gansample.training.emoji --tarball emoji-datasource-google-16.0.0.tgz --out data/emoji

Licences: the images are Google's Noto Emoji, Apache License 2.0; the package's metadata
(emoji.json) is MIT. Both are copied into the folder (LICENSE-IMAGES.txt, LICENSE-DATA.txt).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from gansample.errors import GansampleError
from gansample.files import atomic_write, ensure_outdir

PACKAGE = "emoji-datasource-google"
VERSION = "16.0.0"
IMAGE_DIR = "package/img/google/64/"
SKIP_CATEGORIES = ("Component",)  # 5 skin-tone swatches, not pictures
MAX_MEMBER_BYTES = 4 * 2**20  # a 64 px PNG is a few KB; anything larger is not this package
IMAGES_LICENSE = """The emoji images are Noto Emoji by Google, from the npm package
emoji-datasource-google {version}, licensed under the Apache License, Version 2.0:
https://github.com/googlefonts/noto-emoji/blob/main/LICENSE (images) and
https://www.apache.org/licenses/LICENSE-2.0 .
"""


def npm_pack(dest: Path, version: str = VERSION) -> Path:
    """Fetch the package tarball with ``npm pack`` (from the npm registry) into ``dest``."""
    npm = shutil.which("npm")
    if npm is None:
        raise GansampleError("data: npm is needed to fetch the emoji images (apt-get install npm), or pass "
                             "--tarball with a downloaded emoji-datasource-google .tgz", "data")
    done = subprocess.run([npm, "pack", f"{PACKAGE}@{version}", "--silent"], cwd=dest, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise GansampleError(f"data: npm pack {PACKAGE}@{version} failed: {done.stderr.strip()[:300]}", "data")
    return dest / done.stdout.strip().splitlines()[-1]


def _safe_name(category: str) -> str:
    return category.replace("&", "and").replace("/", "-").replace(" ", "-")


def extract(tarball: Path, out: Path) -> dict[str, int]:
    """Write out/<Category>/<code>.png for every Google image, with the licences; returns
    the number of images per category."""
    try:
        tar = tarfile.open(tarball, "r:gz")
    except (OSError, tarfile.TarError) as e:
        raise GansampleError(f"tarball: {tarball} is not a readable .tgz ({e})", "tarball") from None
    with tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        if "package/emoji.json" not in members:
            raise GansampleError(f"tarball: {tarball} is not the {PACKAGE} package (no package/emoji.json)",
                                 "tarball")

        def read(name: str) -> bytes:
            m = members[name]
            if m.size > 64 * 2**20:
                raise GansampleError(f"tarball: {name} is {m.size} bytes: not this package", "tarball")
            f = tar.extractfile(m)
            assert f is not None
            return f.read()

        table = json.loads(read("package/emoji.json"))
        counts: dict[str, int] = {}
        ensure_outdir(out, "out")
        for entry in table:
            category = entry.get("category", "")
            if not entry.get("has_img_google") or category in SKIP_CATEGORIES or not category:
                continue
            images = [entry["image"]] + [v["image"] for v in entry.get("skin_variations", {}).values()
                                         if v.get("has_img_google")]
            folder = out / _safe_name(category)
            folder.mkdir(exist_ok=True)
            for name in images:
                member = IMAGE_DIR + name
                if member not in members or members[member].size > MAX_MEMBER_BYTES:
                    continue
                atomic_write(folder / Path(name).name, read(member))
                counts[category] = counts.get(category, 0) + 1
        atomic_write(out / "LICENSE-IMAGES.txt", IMAGES_LICENSE.format(version=VERSION).encode())
        if "package/LICENSE" in members:
            atomic_write(out / "LICENSE-DATA.txt", read("package/LICENSE"))
    return counts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="the image folder to write")
    ap.add_argument("--tarball", type=Path, default=None, help="a downloaded package .tgz (none: npm pack)")
    a = ap.parse_args(argv)
    try:
        if a.tarball is None:
            with tempfile.TemporaryDirectory() as tmp:
                counts = extract(npm_pack(Path(tmp)), a.out)
        else:
            counts = extract(a.tarball, a.out)
    except GansampleError as e:
        raise SystemExit(f"gansample emoji: error: {e}") from None
    total = sum(counts.values())
    print(f"wrote {total} emoji images in {len(counts)} categories to {a.out}: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
