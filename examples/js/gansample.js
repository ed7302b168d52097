// gansample model contract for JavaScript (Node.js and browsers), with no dependencies:
// read the metadata of a gansample ONNX file, make latents by the seed rule, run the
// generator with any onnxruntime JS binding, and turn its output into RGBA pixels.
// The contract is described in docs/model-format.md.

const PREFIX = "gansample.";

// --- ONNX metadata: ModelProto.metadata_props (field 14) is read straight from the
// protobuf bytes, because onnxruntime's JS API does not expose custom metadata. -------
function readVarint(buf, pos) {
  let result = 0, shift = 0, byte;
  do {
    byte = buf[pos++];
    result += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  } while (byte & 0x80);
  return [result, pos];
}

function* fields(buf, start = 0, end = buf.length) {
  let pos = start;
  while (pos < end) {
    let key;
    [key, pos] = readVarint(buf, pos);
    const field = Math.floor(key / 8), wire = key & 7;
    if (wire === 0) { [, pos] = readVarint(buf, pos); continue; }
    if (wire === 1) { pos += 8; continue; }
    if (wire === 5) { pos += 4; continue; }
    if (wire !== 2) throw new Error(`unsupported protobuf wire type ${wire}`);
    let len;
    [len, pos] = readVarint(buf, pos);
    yield [field, pos, pos + len];
    pos += len;
  }
}

export function readMetadata(bytes) {
  const buf = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const text = new TextDecoder();
  const meta = {};
  for (const [field, s, e] of fields(buf)) {
    if (field !== 14) continue;  // ModelProto.metadata_props
    let key = "", value = "";
    for (const [f, a, b] of fields(buf, s, e)) {
      if (f === 1) key = text.decode(buf.subarray(a, b));
      if (f === 2) value = text.decode(buf.subarray(a, b));
    }
    if (key.startsWith(PREFIX)) meta[key.slice(PREFIX.length)] = value;
  }
  return meta;
}

// Parse and check: throws a clear Error for anything that is not a gansample generator.
export function generatorInfo(bytes, source = "model") {
  let meta;
  try {
    meta = readMetadata(bytes);
  } catch (err) {
    throw new Error(`${source}: not an ONNX file (${err.message})`);
  }
  if (!meta.role) throw new Error(`${source}: not a gansample generator (no gansample.* metadata)`);
  if (meta.role !== "generator") throw new Error(`${source}: not a gansample generator (its role is '${meta.role}')`);
  return {
    zDim: Number(meta.z_dim),
    numClasses: Number(meta.num_classes || 0),
    classNames: JSON.parse(meta.class_names || "[]"),
    resolution: Number(meta.img_resolution),
    channels: Number(meta.img_channels),
    output: meta.output,  // "float32 NCHW [-1,1]" or "uint8 NHWC [0,255]"
    truncation: meta.truncation || "z",  // "w": the graph takes psi [batch] and truncates in W itself
    name: meta.name || "",
  };
}

// --- the seed rule: z = numpy.random.RandomState(seed).randn(z_dim) -------------------
// MT19937 seeded with init_genrand(seed), doubles from two 32-bit draws (53 bits), and
// numpy's legacy polar Box-Muller that returns the second value of each pair first.
class MT19937 {
  constructor(seed) {
    this.mt = new Uint32Array(624);
    this.mt[0] = seed >>> 0;
    for (let i = 1; i < 624; i++) {
      const p = this.mt[i - 1] ^ (this.mt[i - 1] >>> 30);
      // 1812433253 * p + i (mod 2^32), in two 16-bit halves to stay exact in doubles
      this.mt[i] = ((((p >>> 16) * 1812433253) & 0xffff) * 65536 + (p & 0xffff) * 1812433253 + i) >>> 0;
    }
    this.index = 624;
  }
  twist() {
    const mt = this.mt;
    for (let i = 0; i < 624; i++) {
      const y = (mt[i] & 0x80000000) | (mt[(i + 1) % 624] & 0x7fffffff);
      mt[i] = (mt[(i + 397) % 624] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0)) >>> 0;
    }
    this.index = 0;
  }
  nextUint32() {
    if (this.index >= 624) this.twist();
    let y = this.mt[this.index++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }
  nextDouble() {
    const a = this.nextUint32() >>> 5, b = this.nextUint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }
}

export function zFromSeed(seed, zDim) {
  const rng = new MT19937(seed);
  const z = new Float32Array(zDim);
  let spare = null;
  for (let i = 0; i < zDim; i++) {
    if (spare !== null) { z[i] = spare; spare = null; continue; }
    let x1, x2, r2;
    do {
      x1 = 2 * rng.nextDouble() - 1;
      x2 = 2 * rng.nextDouble() - 1;
      r2 = x1 * x1 + x2 * x2;
    } while (r2 >= 1 || r2 === 0);
    const f = Math.sqrt(-2 * Math.log(r2) / r2);
    spare = f * x1;
    z[i] = f * x2;
  }
  return z;
}

export const labelForSeed = (seed, numClasses) => (numClasses > 0 ? seed % numClasses : 0);

export function parseSeeds(text) {
  const out = [];
  for (const part of String(text).split(",")) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) throw new Error(`seeds: got '${text}'; use N or A-B joined by commas, e.g. 0-7 or 1,5,9`);
    const a = Number(m[1]), b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new Error(`seeds: bad range '${part.trim()}'`);
    for (let s = a; s <= b; s++) out.push(s);
  }
  return out;
}

// --- running the generator ---------------------------------------------------------------
// `ort` is the onnxruntime module (onnxruntime-node or onnxruntime-web). Returns one
// Uint8Array of H*W*C bytes per image (NHWC), quantised exactly as gansample does:
// uint8 = trunc(clip(x * 127.5 + 128, 0, 255)) in float32 arithmetic.
// `psi` is fed to generators that truncate in W (info.truncation === "w"); for the others,
// truncation is psi * z, applied to the latents by the caller.
export async function generate(ort, session, info, latents, labels, psi = 1) {
  const n = latents.length, d = info.zDim;
  const z = new Float32Array(n * d);
  latents.forEach((row, i) => z.set(row, i * d));
  const feeds = { z: new ort.Tensor("float32", z, [n, d]) };
  if (info.numClasses > 0) {
    feeds.label = new ort.Tensor("int64", BigInt64Array.from(labels.map((l) => BigInt(l))), [n]);
  }
  if (info.truncation === "w") feeds.psi = new ort.Tensor("float32", new Float32Array(n).fill(psi), [n]);
  const out = (await session.run(feeds))[session.outputNames[0]];
  const r = info.resolution, c = info.channels, px = r * r * c;
  const images = [];
  for (let i = 0; i < n; i++) {
    if (out.type === "uint8") {
      images.push(Uint8Array.from(out.data.subarray(i * px, (i + 1) * px)));
      continue;
    }
    const img = new Uint8Array(px);
    for (let ch = 0; ch < c; ch++) {
      for (let p = 0; p < r * r; p++) {
        const x = out.data[i * px + ch * r * r + p];
        const v = Math.fround(Math.fround(x * 127.5) + 128);
        img[p * c + ch] = Math.trunc(Math.min(255, Math.max(0, v)));
      }
    }
    images.push(img);
  }
  return images;
}

export function toRGBA(img, r, c) {
  const rgba = new Uint8ClampedArray(r * r * 4);
  for (let p = 0; p < r * r; p++) {
    for (let k = 0; k < 3; k++) rgba[p * 4 + k] = img[p * c + (c === 1 ? 0 : k)];
    rgba[p * 4 + 3] = 255;
  }
  return rgba;
}
