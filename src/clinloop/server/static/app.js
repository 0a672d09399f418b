// clinloop workstation: a thin client of the JSON API (see clinloop/server/app.py);
// viewer.js holds the canvas; mecca.js, picker.js and progress.js hold MECCA's layers, the model
// picker and the volume progress. Every action goes through one queue (keys pressed
// while the model computes wait their turn instead of being dropped).
"use strict";

// ------------------------------------------------------------------ API
const WHY = {
  400: "The server could not do that.", 401: "Access denied: enter the access token (top right).",
  403: "The server refused a request from this page's origin.", 404: "That case or session no longer exists.",
  408: "The upload did not arrive in time; try again.", 409: "This session changed elsewhere; it was reloaded — repeat the action.",
  413: "The file is too large for this server.", 415: "This file type is not supported.",
  422: "The server could not use that input.", 500: "The server hit an unexpected problem (it is logged); try again.",
  503: "The server is busy; try again in a moment.",
};
function plain(status, detail) {  // a sentence for a person: the server's own message, never "400: ..."
  let m = typeof detail === "string" && detail.trim() ? detail.trim() : WHY[status] || `The request failed (${status}).`;
  if (/^[a-z][a-z ]/.test(m)) m = m.charAt(0).toUpperCase() + m.slice(1);  // not "choose()" or "case_id"
  m = /[.!?)]$/.test(m) ? m : m + ".";
  return status === 401 && m !== WHY[401] ? `${m} Enter the access token (top right).` : m;
}
function headers(json) {
  const h = {};
  const tok = localStorage.getItem("clinloop.token");
  if (tok) h["Authorization"] = "Bearer " + tok;
  if (json) h["Content-Type"] = "application/json";
  return h;
}
async function api(method, path, body) {
  const opt = { method, headers: headers(body !== undefined && !(body instanceof FormData)) };
  if (body !== undefined) opt.body = body instanceof FormData ? body : JSON.stringify(body);
  const t0 = performance.now();
  let r = await fetch(path, opt);
  for (let tries = 0; r.status === 503 && tries < 3; tries++) {  // model queue full: wait as the server asks
    const wait = Math.min(15, Math.max(1, parseInt(r.headers.get("Retry-After") || "2", 10) || 2));
    say(`The server is busy: retrying in ${wait} s…`, "");
    await new Promise((ok) => setTimeout(ok, wait * 1000));
    r = await fetch(path, opt);
  }
  const ms = performance.now() - t0;
  const st = r.headers.get("Server-Timing") || "";
  $("timing").textContent = `${method} ${path.replace(/\/api\/sessions\/[^/?]+/, "…")} ${ms.toFixed(0)} ms (${st.replace(/;dur=/g, " ").replace(/,/g, " ·")})`;
  if (!r.ok) {
    let detail = null;
    try { detail = (await r.json()).detail; } catch (e) {}
    const err = new Error(plain(r.status, detail)); err.status = r.status; throw err;
  }
  return r;
}
const getJSON = async (p) => (await api("GET", p)).json();
const postJSON = async (p, b) => (await api("POST", p, b === undefined ? {} : b)).json();

function say(text, kind) { const m = $("msg"); m.textContent = text; m.className = kind || ""; }
function busy(text) { if (text) $("progress-text").textContent = text; }
function guarded(fn, text) {  // queue the action; the progress overlay shows while anything is queued
  S.pending++;
  $("progress").classList.remove("hidden"); $("progress-text").textContent = text || "Computing…";
  document.body.style.cursor = "progress";
  const run = S.chain.then(async () => {
    try { await fn(); } catch (e) { say(e.message, "err"); console.error(e); }
    finally {
      S.pending--;
      if (!S.pending) { $("progress").classList.add("hidden"); document.body.style.cursor = ""; }
    }
  });
  S.chain = run;
  return run;
}

// ---------------------------------------------------------- proposals
async function refreshView() {  // markers, slice strip, crop box, per-slice area (GET .../view)
  const q = S.ndim === 3 ? `?z=${S.z}` : "";
  S.vstate = await getJSON(`/api/sessions/${S.sid}/view${q}`);
  S.clicks = S.vstate.clicks || [];
  sliceStrip();
}
async function refreshRaters() {
  const q = S.ndim === 3 ? `?z=${S.z}` : "";
  const R = (S.raters = await getJSON(`/api/sessions/${S.sid}/raters${q}`));
  $("experts").classList.toggle("hidden", !R.n_raters);
  S.layers.raters = await Promise.all(R.raters.map(async (r) => splitMask(await loadPNG(r.contour), hexRGB(r.colour)).edge));
  S.layers.agree = R.agreement ? await loadPNG(R.agreement) : null;
  const box = $("rater-list"); box.innerHTML = "";
  for (const r of R.raters) {
    const el = document.createElement("label"); el.className = "check rater";
    const d = r.dice === null ? "–" : r.dice.toFixed(3), ds = r.dice_slice === null || r.dice_slice === undefined ? "" : ` · slice ${r.dice_slice.toFixed(3)}`;
    el.innerHTML = `<input type="checkbox"><span class="sw" style="background:${r.colour}"></span><span class="rid"></span><span class="dice" title="Dice of the current proposal to this rater (whole ${S.ndim === 3 ? "volume" : "image"})">Dice ${d}${ds}</span>`;
    el.querySelector(".rid").textContent = /^\d+$/.test(r.id) ? "rater " + r.id : r.id;
    const cb = el.querySelector("input"); cb.checked = !!S.showRater[r.id]; cb.dataset.rater = r.id;
    cb.onchange = () => { S.showRater[r.id] = cb.checked; draw(); };
    box.appendChild(el);
  }
}
function hexRGB(h) { return [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)); }
async function showProposal(p) {
  S.prop = p; S.preview = null;
  $("view").dataset.maskFrom = p && p.mask ? "proposal" : "";
  const L = S.layers;
  L.mask = L.unc = null; L.advice = []; L.diffs = [];
  await refreshView();
  const vs = S.vstate;
  $("st-iter").textContent = p && p.iteration ? p.iteration : "–";
  $("st-time").textContent = p && p.seconds !== undefined ? `${(p.seconds * 1000).toFixed(0)} ms` : "–";
  $("st-area").textContent = p && p.area !== undefined ? (S.ndim === 3 ? `${vs.slice_area ?? 0} / ${p.area}` : p.area) : "–";
  $("st-area-k").textContent = S.ndim === 3 ? "Area slice / all (px)" : "Area (px)";
  $("st-unc").textContent = p && p.uncertainty_max !== undefined ? p.uncertainty_max.toFixed(2) : "–";
  const box = $("cands"); box.innerHTML = "";
  await meccaLayers(null);  // mecca.js: confidence layer, advice list
  if (S.raters && S.raters.n_raters) await refreshRaters();
  if (!p || !p.mask) { box.innerHTML = '<div class="hint">Click on the structure to see candidates.</div>'; draw(); return; }
  L.mask = splitMask(await loadPNG(p.mask), [0, 200, 255]);
  L.unc = await loadPNG(p.uncertainty);
  L.advice = await Promise.all((p.advice || []).map((a) => loadPNG(a.mask)));
  L.diffs = await Promise.all((p.candidates || []).map((c) => loadPNG(c.diff)));
  await meccaLayers(p);
  const crop = cropBox();
  if (!p.candidates || !p.candidates.length) box.innerHTML = '<div class="hint">This model offers no candidates: each click refines the mask (Shift+click excludes).</div>';
  else if (!crop) {
    const has = (vs.slice_areas || []).map((a, z) => (a > 0 ? z : -1)).filter((z) => z >= 0);
    box.innerHTML = `<div class="hint">No mask on slice ${S.z}. Slices with a mask: ${has.join(", ") || "none"} (strip below the image).</div>`;
  }
  else (p.candidates || []).forEach((c, i) => {
    const el = document.createElement("div"); el.className = "cand"; el.dataset.k = c.index;
    el.innerHTML = `<span class="num">${c.index + 1}</span>`;
    el.appendChild(candidateCanvas(L.diffs[i], crop));
    const lab = document.createElement("div"); lab.className = "lab";
    lab.innerHTML = `<span><span class="p">+${c.added}</span> / <span class="m">−${c.removed}</span></span><span>${c.area} px</span>`;
    el.appendChild(lab);
    el.onclick = () => choose(c.index);
    el.onmouseenter = () => { S.preview = i; draw(); };
    el.onmouseleave = () => { S.preview = null; draw(); };
    box.appendChild(el);
  });
  draw();
}
function setStatus(st) {
  const b = $("status-badge"); b.textContent = st || "—"; b.className = "badge " + (st || "");
  const accepted = st === "accepted";
  for (const e of document.querySelectorAll(".exp")) e.disabled = !accepted;
  $("accept").disabled = accepted || !S.prop || !S.prop.mask;
}

// -------------------------------------------------------------- actions
async function loadSlice() {
  const q = S.ndim === 3 ? `?z=${S.z}` : "";
  const im = await getJSON(`/api/sessions/${S.sid}/image${q}`);
  if (im.kind === "rgb") im.png = await loadPNG(im.png); else im.data = floats(im.data);
  S.img = im;
  if (im.kind === "grey" && !S.wl) autoWL();
  renderBase();
}
async function openSession(desc) {
  S.sid = desc.session_id; S.shape = desc.shape; S.ndim = desc.ndim; S.wl = null; S.prop = null; S.raters = null;
  S.caseId = desc.case_id; S.layers = {}; S.clicks = []; S.vstate = null; S.showRater = {};
  S.boxMark = boxOf(desc.history); S.boxDraft = null;
  S.view = { zoom: 1, px: 0, py: 0 }; S.wantZ = undefined;
  S.z = S.ndim === 3 ? Math.floor(desc.shape[0] / 2) : 0;
  for (const e of document.querySelectorAll(".case")) e.classList.toggle("active", e.dataset.id === desc.case_id);
  $("empty").classList.add("hidden");
  caseTitle(desc); showModel(desc.model);  // picker.js
  $("slice-ctl").classList.toggle("hidden", S.ndim !== 3);
  $("slice-strip").classList.toggle("hidden", S.ndim !== 3);
  const p = desc.has_proposal ? await getJSON(`/api/sessions/${S.sid}/proposal`) : null;
  if (p && p.z !== null && p.z !== undefined) S.z = p.z;
  if (S.ndim === 3) { $("slice").max = desc.shape[0] - 1; $("slice").value = S.z; $("slice-val").textContent = S.z; }
  const q = S.ndim === 3 ? `?z=${S.z}` : "";
  S.intensity = (await getJSON(`/api/sessions/${S.sid}/view${q}`)).intensity;
  await loadSlice();
  $("wl-ctl").classList.toggle("hidden", S.img.kind !== "grey");
  fillPresets();
  if (S.intensity && S.intensity.hu) { $("preset").value = "soft"; applyPreset("soft"); } else { $("preset").value = "auto"; syncWL(); }
  $("exp-dcm").classList.toggle("hidden", !(desc.exports || []).includes("dcm"));
  $("exp-png").classList.toggle("hidden", !(desc.exports || []).includes("png"));
  S.raters = { n_raters: 1 };  // ask once; refreshRaters hides the panel when the case has none
  await showProposal(p);
  setStatus(desc.status);
  const prof = desc.profile_applied ? "Opened with your preference profile. " : "";
  say(desc.status === "accepted" ? `${prof}This case is accepted: export it, or Undo to edit again.`
    : p ? `${prof}Resumed where you left off (proposal ${p.iteration}).` : `${prof}Click once on the structure.`, "ok");
  refreshSessions();
  await refreshCases();
  caseTitle(desc);  // a large collection learns a case's structure when it opens
}
function caseTitle(desc) {
  const row = (S.cases || []).find((c) => c.case_id === desc.case_id);
  const structure = row ? row.structure : desc.structure;
  $("case-title").textContent = `${row ? row.name : desc.case_id || "upload"}${structure ? " · " + structure : ""} · ${desc.shape.join("×")}${desc.modality ? " · " + desc.modality : ""}`;
}
function openCase(caseId, fresh) {
  const row = (S.cases || []).find((c) => c.case_id === caseId);
  if (row && row.my_session && !fresh) return resume(row.my_session, `Resuming ${row.name}…`);
  return guarded(async () => {
    say(`Opening ${row ? row.name : caseId}…`);
    const d = await postJSON("/api/sessions", { case_id: caseId, use_profile: $("use-profile").checked,
                                                profile_any_structure: $("profile-any").checked,
                                                ...(S.pick ? { model: S.pick } : {}) });
    await openSession(d);
  }, "Opening the case: computing the image embedding…");
}
function upload(file) {
  return guarded(async () => {
    say(`Uploading ${file.name}…`);
    const fd = new FormData(); fd.append("file", file, file.name);
    fd.append("use_profile", $("use-profile").checked ? "true" : "false");
    fd.append("profile_any_structure", $("profile-any").checked ? "true" : "false");
    if (S.pick) fd.append("model", S.pick);
    const structure = $("upload-structure").value.trim();
    if (structure) fd.append("structure", structure);
    const d = await (await api("POST", "/api/sessions", fd)).json();
    await openSession(d);
  }, `Opening ${file.name}: computing the image embedding…`);
}
function resume(sid, text) {
  return guarded(async () => { await openSession(await getJSON(`/api/sessions/${sid}`)); }, text || "Loading the session…");
}
function clickAt(ev, positive) {
  if (!S.sid || !S.base) return;
  const pt = toImage(ev), W = S.base.width, H = S.base.height;
  if (pt.x < -0.5 || pt.y < -0.5 || pt.x > W - 0.5 || pt.y > H - 0.5) return;
  const body = { x: pt.x, y: pt.y, positive };
  if (S.ndim === 3) body.z = S.z;
  return guarded(async () => {
    say(`${positive ? "Include" : "Exclude"} click at (${pt.x.toFixed(0)}, ${pt.y.toFixed(0)}${S.ndim === 3 ? ", slice " + S.z : ""})…`);
    const p = await volumeStep(() => postJSON(`/api/sessions/${S.sid}/click`, body));
    await showProposal(p); setStatus(p.status); refreshSessions();
    const n = (p.candidates || []).length;
    say(n ? `Proposal ${p.iteration}: pick a candidate (1–${n}), click again, or accept.`
      : `Proposal ${p.iteration}: click again to refine (Shift+click excludes), or accept.`, "ok");
  }, "Computing the proposal…");
}
// ------------------------------------------------------------ box tool
// A rectangle dragged with the "box" tool (or with B held) is the first interaction (POST .../box);
// the box stays drawn as a marker (S.boxMark, on its slice) until it is undone.
function boxOf(history) {
  const h = (history || [])[0];
  return h && h.action === "box" ? { x0: h.box[0], y0: h.box[1], x1: h.box[2], y1: h.box[3], z: h.box[4] } : null;
}
function boxFromDrag(a, b) {  // two image points -> inclusive pixel box inside the image, or null
  const W = S.base.width, H = S.base.height, cl = (v, n) => Math.max(0, Math.min(n - 1, Math.round(v)));
  const bx = { x0: cl(Math.min(a.x, b.x), W), y0: cl(Math.min(a.y, b.y), H), x1: cl(Math.max(a.x, b.x), W), y1: cl(Math.max(a.y, b.y), H) };
  return bx.x0 < bx.x1 && bx.y0 < bx.y1 ? bx : null;
}
function drawBoxes(ctx, T) {  // called by viewer.js drawMarkers: the posted box and the one being dragged
  const cv = $("view"), m = S.boxMark && (S.ndim !== 3 || S.boxMark.z === S.z) ? S.boxMark : null;
  cv.dataset.box = m ? `${m.x0} ${m.y0} ${m.x1} ${m.y1}` : "";
  for (const [b, colour] of [[m, "#28dc5a"], [S.boxDraft, "#ffd23c"]]) {
    if (!b) continue;
    ctx.setLineDash(b === m ? [] : [6, 4]); ctx.lineWidth = 2; ctx.strokeStyle = colour;
    ctx.strokeRect(T.tx + b.x0 * T.k, T.ty + b.y0 * T.k, (b.x1 - b.x0 + 1) * T.k, (b.y1 - b.y0 + 1) * T.k);
    ctx.setLineDash([]);
  }
}
function setBoxTool(on) { S.boxTool = on; $("mode-box").classList.toggle("active", on); }
function postBox(bx) {
  if (!S.sid) return;
  const body = { ...bx };
  if (S.ndim === 3) body.z = S.z;
  return guarded(async () => {
    say(`Box (${bx.x0}, ${bx.y0})–(${bx.x1}, ${bx.y1})${S.ndim === 3 ? " on slice " + S.z : ""}…`);
    const p = await postJSON(`/api/sessions/${S.sid}/box`, body);
    S.boxMark = { ...body }; setBoxTool(false);
    await showProposal(p); setStatus(p.status); refreshSessions();
    say(`Proposal ${p.iteration}: pick a candidate (1–${(p.candidates || []).length || "–"}), click to correct, or accept.`, "ok");
  }, "Computing the proposal from the box…");
}
function choose(k) {
  if (!S.sid) return;
  return guarded(async () => {  // checked when its turn comes: an earlier queued action may change the candidates
    if (!S.prop || !S.prop.candidates || k >= S.prop.candidates.length || S.prop.status === "accepted") return;
    const p = await volumeStep(() => postJSON(`/api/sessions/${S.sid}/choose`, { candidate: k }));
    await showProposal(p); setStatus(p.status);
    say(`Candidate ${k + 1} chosen → proposal ${p.iteration}.`, "ok");
  }, `Applying candidate ${k + 1}…`);
}
function undo() {
  if (!S.sid) return;
  return guarded(async () => {
    const p = await postJSON(`/api/sessions/${S.sid}/undo`);
    if (!p.mask) S.boxMark = null;  // undone back to the start: the box is gone too
    await showProposal(p.mask ? p : null); setStatus(p.status);
    say("Undone.", "ok"); await refreshCases();
  }, "Undoing…");
}
function accept() {
  if (!S.sid) return;
  return guarded(async () => {
    if (!S.prop || !S.prop.mask || S.prop.status === "accepted") return;
    const a = await postJSON(`/api/sessions/${S.sid}/accept`);
    S.prop.status = "accepted"; setStatus("accepted");
    say(`Accepted (${a.area} px after ${a.iteration} interaction(s)). Export it, or open the next case.`, "ok");
    $("profile-state").textContent = "(saved)";
    refreshSessions(); await refreshCases();
  }, "Saving the accepted mask…");
}
function exportMask(fmt) {
  if (!S.sid) return;
  return guarded(async () => {
    const r = await api("GET", `/api/sessions/${S.sid}/mask?format=${encodeURIComponent(fmt)}`);
    const cd = r.headers.get("Content-Disposition") || "";
    const name = (cd.match(/filename="([^"]+)"/) || [])[1] || `mask.${fmt}`;
    const url = URL.createObjectURL(await r.blob());
    const a = document.createElement("a"); a.href = url; a.download = name; document.body.appendChild(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 5000);
    say(`Exported ${name}.`, "ok");
  }, "Exporting…");
}
async function setSlice(z) {
  if (S.ndim !== 3) return;
  z = Math.max(0, Math.min(S.shape[0] - 1, z)); if (z === S.z) return;
  S.z = z; $("slice").value = z; $("slice-val").textContent = z;
  await loadSlice();
  await showProposal(S.prop && S.prop.mask ? await getJSON(`/api/sessions/${S.sid}/proposal?z=${z}`) : S.prop);
}
function goSlice(z) {  // coalesced: a held key or a dragged slider queues one slice change, not dozens
  S.wantZ = z;
  if (S.sliceQueued) return;
  S.sliceQueued = true;
  guarded(async () => {
    S.sliceQueued = false;
    await setSlice(S.wantZ);
    if (!S.sliceQueued) S.wantZ = undefined;
  }, "Loading the slice…");
}

// -------------------------------------------------------------- panels
async function refreshCases() {
  const d = await getJSON("/api/cases");
  S.cases = d.cases;
  $("ranked").textContent = d.ranked_by ? "· most ambiguous first (LEXU)" : "";
  const box = $("cases"); box.innerHTML = "";
  if (!d.cases.length) box.innerHTML = '<div class="hint">No worklist (start the server with --data PATH) — upload an image below.</div>';
  const top = Math.max(1e-9, ...d.cases.map((c) => c.predicted_disagreement || 0));
  d.cases.forEach((c, i) => {
    const el = document.createElement("div"); el.className = "case"; el.dataset.id = c.case_id;
    el.classList.toggle("active", c.case_id === S.caseId);
    const ranked = c.predicted_disagreement !== undefined;
    const frac = ranked ? (100 * c.predicted_disagreement) / top : 0;
    el.innerHTML = `<span class="rank">${c.rank || i + 1}</span><span class="id"><b></b><small></small><span class="st"></span></span>` +
      (ranked ? `<span class="bar" title="predicted disagreement ${c.predicted_disagreement.toFixed(3)}"><i style="width:${frac}%"></i></span>` : "");
    el.querySelector("b").textContent = c.name || c.case_id;
    el.querySelector("small").textContent = c.structure || "";
    el.querySelector(".id").title = `${c.case_id}${c.my_session ? " — click resumes your session; Shift+click starts a new one" : ""}`;
    const st = el.querySelector(".st"); st.className = "st s-" + c.status.replace(" ", "-");
    st.textContent = c.status + (c.by && c.by.length ? " · " + c.by.join(", ") : "");
    el.onclick = (e) => openCase(c.case_id, e.shiftKey);
    box.appendChild(el);
  });
}
async function refreshSessions() {
  try {
    const d = await getJSON("/api/sessions");
    const box = $("sessions"); box.innerHTML = "";
    for (const s of d.sessions.slice(0, 30)) {
      const el = document.createElement("div"); el.className = "sess";
      el.innerHTML = `<span class="id"></span><span class="s-${s.status}">${s.status} · ${s.iteration}</span>`;
      const row = (S.cases || []).find((c) => c.case_id === s.case_id);
      el.querySelector(".id").textContent = row ? row.name : s.case_id || "upload";
      el.onclick = () => resume(s.session_id);
      box.appendChild(el);
    }
  } catch (e) {}
}
async function init() {
  $("token").value = localStorage.getItem("clinloop.token") || "";
  const qt = new URLSearchParams(location.search).get("token");
  if (qt) { localStorage.setItem("clinloop.token", qt); $("token").value = qt; }
  try {
    S.info = await getJSON("/api/info");
    $("model-name").textContent = "model: " + S.info.model;
    fillModels(S.info);  // picker.js
    $("user-name").textContent = "user: " + S.info.user;
    $("profile-state").textContent = S.info.has_profile ? "(saved profile)" : "(none yet)";
    await refreshCases(); await refreshSessions();
    say("Ready. Select a case or upload an image.");
  } catch (e) { say(e.message, "err"); }
}

// -------------------------------------------------------------- wiring
$("token").onchange = () => { localStorage.setItem("clinloop.token", $("token").value.trim()); init(); };
$("file").onchange = (e) => { if (e.target.files[0]) upload(e.target.files[0]); e.target.value = ""; };
let drag = null;  // {mode: "pan" | "wl" | "box", x, y, moved, ev}
$("view").addEventListener("mousedown", (ev) => {
  if (!S.base) return;
  ev.preventDefault();
  if (ev.button === 1 || (ev.button === 0 && S.space)) drag = { mode: "pan", x: ev.clientX, y: ev.clientY };
  else if (ev.button === 0 && (S.boxTool || S.boxKey)) drag = { mode: "box", x: ev.clientX, y: ev.clientY, start: toImage(ev) };
  else if (ev.button === 2) drag = { mode: "wl", x: ev.clientX, y: ev.clientY, moved: false, ev };
  else if (ev.button === 0) clickAt(ev, !(ev.shiftKey || S.negative));
});
window.addEventListener("mousemove", (ev) => {
  if (!drag) return;
  if (drag.mode === "box") { S.boxDraft = boxFromDrag(drag.start, toImage(ev)); draw(); return; }
  const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
  if (drag.mode === "wl" && !drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
  drag.x = ev.clientX; drag.y = ev.clientY; drag.moved = true;
  if (drag.mode === "pan") { S.view.px += dx; S.view.py += dy; draw(); } else dragWL(dx, dy);
});
window.addEventListener("mouseup", (ev) => {
  if (drag && drag.mode === "box") {
    const bx = S.base ? boxFromDrag(drag.start, toImage(ev)) : null;
    S.boxDraft = null; drag = null; draw();
    if (bx) postBox(bx); else say("Drag a rectangle around the structure (at least 2×2 pixels).");
    return;
  }
  if (drag && drag.mode === "wl" && !drag.moved) clickAt(drag.ev, false);  // a right click without a drag: exclude
  drag = null;
});
$("view").addEventListener("contextmenu", (e) => e.preventDefault());
$("view").addEventListener("wheel", (e) => {
  e.preventDefault();
  if (S.ndim === 3 && !(e.ctrlKey || e.metaKey)) { goSlice(S.z + Math.sign(e.deltaY)); return; }
  const p = toImage(e); zoomAt(e.deltaY < 0 ? 1.25 : 0.8, p.cx, p.cy);
}, { passive: false });
$("slice").oninput = (e) => goSlice(+e.target.value);
$("ww").oninput = (e) => { S.wl.window = +e.target.value; syncWL(); renderBase(); draw(); };
$("wl").oninput = (e) => { S.wl.level = +e.target.value; syncWL(); renderBase(); draw(); };
$("preset").onchange = (e) => applyPreset(e.target.value);
for (const id of ["show-mask", "show-unc", "show-conf", "show-adv", "show-agree", "mask-mode", "opacity"]) $(id).addEventListener("input", draw);
$("zoom-in").onclick = () => zoomAt(1.25); $("zoom-out").onclick = () => zoomAt(0.8); $("zoom-reset").onclick = resetView;
$("details").onchange = () => document.body.classList.toggle("show-details", $("details").checked);
$("mode-pos").onclick = () => { S.negative = false; $("mode-pos").classList.add("active"); $("mode-neg").classList.remove("active"); };
$("mode-neg").onclick = () => { S.negative = true; $("mode-neg").classList.add("active"); $("mode-pos").classList.remove("active"); };
$("mode-box").onclick = () => setBoxTool(!S.boxTool);
$("undo").onclick = undo;
$("accept").onclick = accept;
for (const b of document.querySelectorAll(".exp")) b.onclick = () => exportMask(b.dataset.fmt);
document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT" && e.target.type !== "range" && e.target.type !== "checkbox") return;
  if (e.target.tagName === "SELECT") return;
  if (e.key >= "1" && e.key <= "9") { choose(+e.key - 1); e.preventDefault(); }
  else if (e.key === "0") { resetView(); e.preventDefault(); }
  else if (e.key === "+" || e.key === "=") { zoomAt(1.25); e.preventDefault(); }
  else if (e.key === "-" || e.key === "_") { zoomAt(0.8); e.preventDefault(); }
  else if (e.key === "b" || e.key === "B") { S.boxKey = true; e.preventDefault(); }
  else if (e.key === " ") { S.space = true; $("view").classList.add("panning"); e.preventDefault(); }
  else if (e.key === "Enter") { accept(); e.preventDefault(); }
  else if ((e.key === "z" && (e.ctrlKey || e.metaKey)) || e.key === "u" || e.key === "U") { undo(); e.preventDefault(); }
  else if (e.key === "h" || e.key === "H") { $("show-unc").checked = !$("show-unc").checked; draw(); }
  else if ((e.key === "k" || e.key === "K") && S.layers.conf) { $("show-conf").checked = !$("show-conf").checked; draw(); }
  else if (e.key === "c" || e.key === "C") { const m = $("mask-mode"); m.selectedIndex = (m.selectedIndex + 1) % m.options.length; draw(); }
  else if (e.key === "ArrowUp" || e.key === "PageUp") { goSlice((S.wantZ ?? S.z) + 1); e.preventDefault(); }
  else if (e.key === "ArrowDown" || e.key === "PageDown") { goSlice((S.wantZ ?? S.z) - 1); e.preventDefault(); }
});
document.addEventListener("keyup", (e) => { if (e.key === "b" || e.key === "B") S.boxKey = false; if (e.key === " ") { S.space = false; $("view").classList.remove("panning"); } });
window.addEventListener("resize", draw);
setStatus(null);
init();
