// clinloop workstation: MECCA's extras (clinloop/models/mecca). Each click is a hint that
// refines the mask (POST .../click, a one-point hint; the whole 3-D mask in a volume).
// Drawn here: the action-confidence map C(s, a) (proposal key `confidence`, a palette PNG on a
// fixed 0..1 scale: index i >= 1 is confidence (i - 1) / 31), the advice regions listed with the
// slices they span (a click on one goes to its middle slice), and the region of interest a
// session runs on (`roi`, dashed). viewer.js draws the layers; app.js calls meccaLayers().
"use strict";

async function meccaLayers(p) {  // after a proposal arrives: load the confidence layer, list the advice
  const L = S.layers, has = !!(p && p.confidence);
  L.conf = has ? await loadPNG(p.confidence) : null;
  $("conf-toggle").classList.toggle("hidden", !has);
  adviceList(p);
}
function adviceList(p) {
  const box = $("advice"); box.innerHTML = "";
  const adv = (p && p.advice) || [];
  if (!adv.length) return;
  const head = document.createElement("div");
  head.textContent = `${adv.length} advice region(s) outlined in amber (least confident first): check these first.`;
  box.appendChild(head);
  if (S.ndim !== 3) return;
  const row = document.createElement("div"); row.className = "adv-list";
  adv.forEach((a, i) => {
    if (!a.slices || !a.slices.length) return;
    const b = document.createElement("button"), [lo, hi] = a.slices, mid = Math.round((lo + hi) / 2);
    b.className = "adv" + (a.slice_area ? " here" : ""); b.dataset.k = i; b.dataset.z = mid;
    b.textContent = `${i + 1}: ${lo === hi ? "slice " + lo : "slices " + lo + "–" + hi}`;
    b.title = `${a.area} voxels; ${a.slice_area} on this slice — click to go to slice ${mid}`;
    b.onclick = () => goSlice(mid);
    row.appendChild(b);
  });
  box.appendChild(row);
}
function drawConfidence(ctx, W, H) {  // viewer.js draw(): under the advice and the mask
  if ($("show-conf").checked && S.layers.conf) ctx.drawImage(S.layers.conf, 0, 0, W, H);
}
function confidenceBar() {  // viewer.js colourBars(): fixed 0..1 scale, this slice's range in the title
  const on = $("show-conf").checked && !!S.layers.conf;
  $("cbar-conf").classList.toggle("hidden", !on);
  const r = S.prop && S.prop.confidence_range;
  $("cbar-conf").dataset.range = r ? `${r[0]} ${r[1]}` : "";
  $("cbar-conf-slice").textContent = r ? `this slice ${r[0].toFixed(2)}–${r[1].toFixed(2)}` : "";
}
function drawROI(ctx, T) {  // viewer.js drawMarkers(): the session's region of interest on this slice
  const r = S.prop && S.prop.roi, cv = $("view");
  const on = r && (S.ndim !== 3 || (S.z >= r[0][0] && S.z < r[0][1]));
  cv.dataset.roi = on ? r.map((a) => a.join("-")).join(" ") : "";
  if (!on) return;
  const [ry, rx] = S.ndim === 3 ? [r[1], r[2]] : [r[0], r[1]];
  ctx.setLineDash([3, 5]); ctx.lineWidth = 1; ctx.strokeStyle = "rgba(255,255,255,0.6)";
  ctx.strokeRect(T.tx + rx[0] * T.k, T.ty + ry[0] * T.k, (rx[1] - rx[0]) * T.k, (ry[1] - ry[0]) * T.k);
  ctx.setLineDash([]);
}
