// Generate images from a gansample generator.onnx with onnxruntime-node (no Python).
//
//   node node/generate.mjs ../exported/fashion-mnist/generator.onnx --seeds 0-7 --outdir out
//   node node/generate.mjs MODEL.onnx --latents latents.json --json result.json
//
// --latents takes a JSON file {"latents": [[...z_dim floats], ...], "labels": [...]}.
// --json writes {"seeds", "labels", "shape", "pixels"} for comparisons.
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import ort from "onnxruntime-node";
import { generatorInfo, generate, labelForSeed, parseSeeds, zFromSeed } from "../js/gansample.js";

function arg(name, fallback = undefined) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
}

// A minimal PNG writer (8-bit grayscale or RGB), using node's zlib.
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, "ascii");
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}
function png(img, r, c) {
  const raw = Buffer.alloc(r * (r * c + 1));
  for (let y = 0; y < r; y++) {
    raw[y * (r * c + 1)] = 0;  // filter: none
    Buffer.from(img.subarray(y * r * c, (y + 1) * r * c)).copy(raw, y * (r * c + 1) + 1);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(r, 0);
  ihdr.writeUInt32BE(r, 4);
  ihdr[8] = 8;
  ihdr[9] = c === 1 ? 0 : 2;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", ihdr),
    chunk("IDAT", zlib.deflateSync(raw)), chunk("IEND", Buffer.alloc(0))]);
}

async function main() {
  const modelPath = process.argv[2];
  if (!modelPath || modelPath.startsWith("--")) {
    throw new Error("usage: node generate.mjs MODEL.onnx [--seeds 0-7 | --latents FILE.json] [--outdir DIR] [--json FILE]");
  }
  const bytes = fs.readFileSync(modelPath);
  const info = generatorInfo(bytes, modelPath);
  let seeds = null, latents, labels;
  if (arg("--latents")) {
    const given = JSON.parse(fs.readFileSync(arg("--latents"), "utf8"));
    latents = given.latents.map((row) => Float32Array.from(row));
    labels = given.labels ?? latents.map(() => 0);
  } else {
    seeds = parseSeeds(arg("--seeds", "0-7"));
    latents = seeds.map((s) => zFromSeed(s, info.zDim));
    labels = seeds.map((s) => labelForSeed(s, info.numClasses));
  }
  const session = await ort.InferenceSession.create(bytes);
  const images = await generate(ort, session, info, latents, labels);
  const r = info.resolution, c = info.channels;
  if (arg("--outdir")) {
    fs.mkdirSync(arg("--outdir"), { recursive: true });
    images.forEach((img, i) => {
      const name = seeds ? `seed${String(seeds[i]).padStart(4, "0")}.png` : `image${String(i).padStart(4, "0")}.png`;
      fs.writeFileSync(path.join(arg("--outdir"), name), png(img, r, c));
    });
  }
  if (arg("--json")) {
    fs.writeFileSync(arg("--json"), JSON.stringify({ seeds, labels, shape: [images.length, r, r, c],
      pixels: images.map((img) => Array.from(img)) }));
  }
  console.log(`${images.length} images ${r}x${r}x${c} from ${info.name || modelPath}`);
}

main().catch((err) => {
  console.error(`error: ${err.message}`);
  process.exit(2);
});
