// Generates images in the browser with onnxruntime-web (WebAssembly): no server-side model code.
// Query parameters: model=URL of generator.onnx, seeds=0-15, latents=URL of a JSON file
// {"latents": [[...]], "labels": [...]}. The result is also written to #result as JSON.
import { generatorInfo, generate, labelForSeed, parseSeeds, toRGBA, zFromSeed } from "../js/gansample.js";

const params = new URLSearchParams(location.search);
const modelUrl = params.get("model") || "../../exported/fashion-mnist/generator.onnx";
ort.env.wasm.wasmPaths = new URL("../node_modules/onnxruntime-web/dist/", location.href).href;
ort.env.wasm.numThreads = 1;  // threads need cross-origin isolation; one is plenty here

let session = null, info = null;

async function load() {
  const resp = await fetch(modelUrl);
  if (!resp.ok) throw new Error(`model: cannot fetch ${modelUrl} (HTTP ${resp.status})`);
  const bytes = new Uint8Array(await resp.arrayBuffer());
  info = generatorInfo(bytes, modelUrl);
  session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
  document.getElementById("model-name").textContent = info.name || modelUrl;
}

async function run() {
  let seeds = null, latents, labels;
  if (params.get("latents")) {
    const given = await (await fetch(params.get("latents"))).json();
    latents = given.latents.map((row) => Float32Array.from(row));
    labels = given.labels ?? latents.map(() => 0);
  } else {
    seeds = parseSeeds(document.getElementById("seeds").value);
    latents = seeds.map((s) => zFromSeed(s, info.zDim));
    labels = seeds.map((s) => labelForSeed(s, info.numClasses));
  }
  const images = await generate(ort, session, info, latents, labels);
  const box = document.getElementById("images");
  box.replaceChildren();
  const r = info.resolution, c = info.channels;
  images.forEach((img, i) => {
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = r;
    canvas.title = seeds ? `seed ${seeds[i]}` : `image ${i}`;
    canvas.getContext("2d").putImageData(new ImageData(toRGBA(img, r, c), r, r), 0, 0);
    box.appendChild(canvas);
  });
  const result = document.getElementById("result");
  result.textContent = JSON.stringify({ seeds, labels, shape: [images.length, r, r, c],
    pixels: images.map((img) => Array.from(img)) });
  document.body.dataset.status = "done";
}

function fail(err) {
  document.getElementById("error").textContent = `error: ${err.message}`;
  document.body.dataset.status = "error";
}

document.getElementById("go").addEventListener("click", () => run().catch(fail));
if (params.get("seeds")) document.getElementById("seeds").value = params.get("seeds");
load().then(run).catch(fail);
