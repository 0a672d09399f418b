// clinloop workstation: the canvas (zoom/pan, window/level, overlays, click markers,
// slice strip, candidate crops). No dependencies; app.js drives it.
"use strict";
const $ = (id) => document.getElementById(id);
const S = { sid: null, info: null, shape: null, ndim: 2, z: 0, img: null, base: null, prop: null, layers: {},
            negative: false, wl: null, pending: 0, chain: Promise.resolve(), caseId: null, intensity: null,
            view: { zoom: 1, px: 0, py: 0 }, space: false, clicks: [], vstate: null, raters: null,
            showRater: {}, preview: null, structure: "" };
const RAMP = ["#000004", "#57106e", "#bc3754", "#f98e09", "#fcffa4"];  // encoding._RAMP (inferno-like)

// ---------------------------------------------------------------- images
function loadPNG(b64) {
  return new Promise((res, rej) => { const im = new Image(); im.onload = () => res(im); im.onerror = rej; im.src = "data:image/png;base64," + b64; });
}
function floats(b64) {
  const bin = atob(b64); const buf = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) buf[i] = bin.charCodeAt(i);
  return new Float32Array(buf.buffer);
}
function renderBase() {  // image slice -> offscreen canvas, applying window/level for grey images
  const im = S.img; if (!im) return;
  const c = document.createElement("canvas"); c.width = im.width; c.height = im.height;
  const ctx = c.getContext("2d");
  if (im.kind === "rgb") { ctx.drawImage(im.png, 0, 0); }
  else {
    const d = ctx.createImageData(im.width, im.height);
    const lo = S.wl.level - S.wl.window / 2, span = Math.max(S.wl.window, 1e-6);
    for (let i = 0; i < im.data.length; i++) {
      let v = ((im.data[i] - lo) / span) * 255; v = v < 0 ? 0 : v > 255 ? 255 : v;
      d.data[4 * i] = d.data[4 * i + 1] = d.data[4 * i + 2] = v; d.data[4 * i + 3] = 255;
    }
    ctx.putImageData(d, 0, 0);
  }
  S.base = c;
}
// a mask PNG from the server (faint interior, opaque outline) -> {fill, edge} canvases in one colour
function splitMask(png, rgb) {
  const W = png.width, H = png.height, src = document.createElement("canvas");
  src.width = W; src.height = H;
  const sx = src.getContext("2d"); sx.drawImage(png, 0, 0);
  const d = sx.getImageData(0, 0, W, H).data;
  const mk = () => { const c = document.createElement("canvas"); c.width = W; c.height = H; return c; };
  const fill = mk(), edge = mk(), fd = fill.getContext("2d").createImageData(W, H), ed = edge.getContext("2d").createImageData(W, H);
  for (let i = 0; i < W * H; i++) {
    const a = d[4 * i + 3]; if (!a) continue;
    const t = a === 255 ? ed.data : null;
    for (const D of t ? [fd.data, ed.data] : [fd.data]) { D[4 * i] = rgb[0]; D[4 * i + 1] = rgb[1]; D[4 * i + 2] = rgb[2]; D[4 * i + 3] = 255; }
  }
  fill.getContext("2d").putImageData(fd, 0, 0); edge.getContext("2d").putImageData(ed, 0, 0);
  return { fill, edge };
}

// -------------------------------------------------------------- transform
function fitScale() {
  const W = S.base.width, H = S.base.height, box = $("viewer");
  return Math.min((box.clientWidth - 16) / W, (box.clientHeight - 16) / H);
}
function transform() {  // image pixel (u, v) -> canvas (tx + u k, ty + v k)
  const cv = $("view"), W = S.base.width, H = S.base.height, k = S.scale * S.view.zoom;
  return { k, tx: (cv.width - W * k) / 2 + S.view.px, ty: (cv.height - H * k) / 2 + S.view.py };
}
function toImage(ev) {  // mouse event -> image pixel coordinates (pixel centres at integers)
  const cv = $("view"), r = cv.getBoundingClientRect(), T = transform();
  const cx = (ev.clientX - r.left) * (cv.width / r.width), cy = (ev.clientY - r.top) * (cv.height / r.height);
  return { x: (cx - T.tx) / T.k - 0.5, y: (cy - T.ty) / T.k - 0.5, cx, cy };
}
function zoomAt(factor, cx, cy) {
  if (!S.base) return;
  const cv = $("view"), T = transform();
  if (cx === undefined) { cx = cv.width / 2; cy = cv.height / 2; }
  const zoom = Math.max(1, Math.min(16, S.view.zoom * factor));
  const u = (cx - T.tx) / T.k, v = (cy - T.ty) / T.k, k = S.scale * zoom;
  S.view.zoom = zoom;
  S.view.px = zoom === 1 ? 0 : cx - u * k - (cv.width - S.base.width * k) / 2;
  S.view.py = zoom === 1 ? 0 : cy - v * k - (cv.height - S.base.height * k) / 2;
  draw();
}
function resetView() { S.view = { zoom: 1, px: 0, py: 0 }; draw(); }

// ------------------------------------------------------------------- draw
function drawMask(ctx, L, W, H) {
  const mode = $("mask-mode").value, op = +$("opacity").value / 100;
  if (mode !== "contour") { ctx.globalAlpha = op; ctx.drawImage(L.fill, 0, 0, W, H); ctx.globalAlpha = 1; }
  if (mode !== "fill") ctx.drawImage(L.edge, 0, 0, W, H);  // the outline stays on top, fully opaque
}
function draw() {
  const cv = $("view"), ctx = cv.getContext("2d");
  if (!S.base) return;
  const W = S.base.width, H = S.base.height;
  S.scale = fitScale();
  cv.width = Math.max(1, Math.round(W * S.scale)); cv.height = Math.max(1, Math.round(H * S.scale));
  cv.style.width = cv.width + "px"; cv.style.height = cv.height + "px";
  const T = transform();
  ctx.setTransform(1, 0, 0, 1, 0, 0); ctx.fillStyle = "#000"; ctx.fillRect(0, 0, cv.width, cv.height);
  ctx.imageSmoothingEnabled = false;
  ctx.setTransform(T.k, 0, 0, T.k, T.tx, T.ty);
  ctx.drawImage(S.base, 0, 0);
  const L = S.layers, R = S.raters;
  if ($("show-agree").checked && L.agree) ctx.drawImage(L.agree, 0, 0, W, H);
  if ($("show-unc").checked && L.unc) ctx.drawImage(L.unc, 0, 0, W, H);
  drawConfidence(ctx, W, H);  // mecca.js
  if ($("show-adv").checked && L.advice) for (const a of L.advice) ctx.drawImage(a, 0, 0, W, H);
  if (R && L.raters) R.raters.forEach((r, i) => { if (S.showRater[r.id] && L.raters[i]) ctx.drawImage(L.raters[i], 0, 0, W, H); });
  if ($("show-mask").checked && L.mask) drawMask(ctx, L.mask, W, H);
  if (S.preview !== null && L.diffs && L.diffs[S.preview]) ctx.drawImage(L.diffs[S.preview], 0, 0, W, H);
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  drawMarkers(ctx, T);
  cv.dataset.zoom = S.view.zoom.toFixed(3);
  cv.dataset.transform = `${T.k.toFixed(4)} ${T.tx.toFixed(1)} ${T.ty.toFixed(1)}`;
  $("zoom-val").textContent = `${Math.round(S.view.zoom * 100)} %`;
  colourBars();
}
function drawMarkers(ctx, T) {
  const shown = S.clicks.filter((c) => S.ndim !== 3 || c.z === S.z);
  $("view").dataset.markers = shown.length;
  for (const c of shown) {
    const x = T.tx + (c.x + 0.5) * T.k, y = T.ty + (c.y + 0.5) * T.k;
    ctx.beginPath(); ctx.arc(x, y, 7, 0, 2 * Math.PI);
    ctx.fillStyle = c.positive ? "#28dc5a" : "#ff4040"; ctx.fill();
    ctx.lineWidth = 1.5; ctx.strokeStyle = "#000"; ctx.stroke();
    ctx.fillStyle = "#000"; ctx.font = "bold 10px sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
    ctx.fillText(String(c.n), x, y + 0.5);
  }
  drawBoxes(ctx, T);  // app.js: the box tool's marker
  drawROI(ctx, T);  // mecca.js: a MECCA session's region of interest
}
function colourBars() {
  const unc = $("show-unc").checked && S.layers.unc && S.prop && S.prop.uncertainty_max !== undefined;
  $("cbar-unc").classList.toggle("hidden", !unc);
  if (unc) $("cbar-unc-hi").textContent = S.prop.uncertainty_max.toFixed(2);
  $("cbar-agree").classList.toggle("hidden", !($("show-agree").checked && S.layers.agree));
  confidenceBar();  // mecca.js
}

// ------------------------------------------------------------ window/level
function autoWL() {  // robust auto: the 1..99 % range of the whole image/volume
  const it = S.intensity;
  const lo = it ? it.p1 : S.img.lo, hi = it ? it.p99 : S.img.hi;
  S.wl = { window: Math.max(hi - lo, 1e-3), level: (hi + lo) / 2 };
  syncWL();
}
function syncWL() {
  if (!S.wl || !S.img || S.img.kind !== "grey") return;
  const ww = $("ww"), wl = $("wl"), it = S.intensity || { min: S.img.min, max: S.img.max };
  const lo = it.min, hi = Math.max(it.max, lo + 1e-3), span = hi - lo;  // fitted to this image's range
  ww.min = span / 1000; ww.max = span; wl.min = lo; wl.max = hi;
  ww.step = wl.step = span > 50 ? 1 : span / 1000;
  ww.value = S.wl.window; wl.value = S.wl.level;
  const f = (v) => (span > 50 ? (+v).toFixed(0) : (+v).toFixed(2));
  $("ww-val").textContent = f(S.wl.window); $("wl-val").textContent = f(S.wl.level);
}
const HU_PRESETS = { lung: [1500, -600], soft: [400, 40], bone: [1800, 400], brain: [80, 40] };
function fillPresets() {
  const sel = $("preset"), hu = !!(S.intensity && S.intensity.hu);
  sel.innerHTML = '<option value="auto">Auto (1–99 %)</option><option value="full">Full range</option>' + (hu
    ? '<option value="lung">CT lung (1500/−600)</option><option value="soft">CT soft tissue (400/40)</option>' +
      '<option value="bone">CT bone (1800/400)</option><option value="brain">CT brain (80/40)</option>' : "");
  sel.title = hu ? "CT in Hounsfield units: HU presets available" : "not CT in HU: percentile windows only";
}
function applyPreset(name) {
  const it = S.intensity;
  if (name === "auto") autoWL();
  else if (name === "full" && it) S.wl = { window: it.max - it.min, level: (it.max + it.min) / 2 };
  else if (HU_PRESETS[name]) S.wl = { window: HU_PRESETS[name][0], level: HU_PRESETS[name][1] };
  syncWL(); renderBase(); draw();
}
function dragWL(dx, dy) {  // right-drag: horizontal = window width, vertical = level
  const it = S.intensity; if (!S.wl || !it || S.img.kind !== "grey") return;
  const span = Math.max(it.max - it.min, 1e-3), per = span / $("view").width;
  S.wl.window = Math.max(span / 1000, Math.min(span * 2, S.wl.window + dx * per));
  S.wl.level = Math.max(it.min, Math.min(it.max, S.wl.level + dy * per));
  syncWL(); renderBase(); draw();
}

// ------------------------------------------------------------ slice strip
function sliceStrip() {
  const box = $("slice-strip");
  if (S.ndim !== 3) { box.innerHTML = ""; return; }
  const areas = (S.vstate && S.vstate.slice_areas) || [];
  const n = S.shape[0];
  if (box.childElementCount !== n) {
    box.innerHTML = "";
    for (let z = 0; z < n; z++) {
      const c = document.createElement("i"); c.dataset.z = z;
      c.onclick = () => goSlice(z);
      box.appendChild(c);
    }
  }
  [...box.children].forEach((c, z) => {
    c.className = (areas[z] > 0 ? "has" : "") + (z === S.z ? " cur" : "");
    c.title = `slice ${z}${areas[z] > 0 ? ` · mask ${areas[z]} px` : ""}`;
  });
}

// ------------------------------------------------------- candidate crops
function cropBox() {  // bounding box of proposal ∪ candidates on this slice + margin, square, in pixels
  const b = S.vstate && S.vstate.bbox, W = S.base.width, H = S.base.height;
  if (!b) return null;
  const w = b[2] - b[0] + 1, h = b[3] - b[1] + 1, side = Math.min(Math.max(W, H), Math.max(16, Math.round(Math.max(w, h) * 1.6)));
  const cx = (b[0] + b[2] + 1) / 2, cy = (b[1] + b[3] + 1) / 2;
  const x0 = Math.max(0, Math.min(W - side, Math.round(cx - side / 2))), y0 = Math.max(0, Math.min(H - side, Math.round(cy - side / 2)));
  return { x0, y0, side };
}
function candidateCanvas(diff, crop) {
  const cv = document.createElement("canvas"), n = 160;
  cv.width = n; cv.height = n;
  const ctx = cv.getContext("2d"); ctx.imageSmoothingEnabled = false;
  const s = crop.side, draw1 = (im) => ctx.drawImage(im, crop.x0, crop.y0, s, s, 0, 0, n, n);
  draw1(S.base);
  ctx.globalAlpha = 0.35; draw1(S.layers.mask.fill); ctx.globalAlpha = 1;
  draw1(S.layers.mask.edge);
  draw1(diff);
  return cv;
}
