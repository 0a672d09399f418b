// clinloop workstation: a thin client of the JSON API (see clinloop/server/app.py).
"use strict";
const $ = (id) => document.getElementById(id);
const S = { sid: null, info: null, shape: null, ndim: 2, z: 0, img: null, base: null, prop: null, layers: {},
            negative: false, wl: null, busy: false, caseId: null };

// ------------------------------------------------------------------ API
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
    say(`server busy: retrying in ${wait} s`, "");
    await new Promise((ok) => setTimeout(ok, wait * 1000));
    r = await fetch(path, opt);
  }
  const ms = performance.now() - t0;
  const st = r.headers.get("Server-Timing") || "";
  $("timing").textContent = `${method} ${path.replace(/\/api\/sessions\/[^/]+/, "…")} ${ms.toFixed(0)} ms (${st.replace(/;dur=/g, " ").replace(/,/g, " ·")})`;
  if (!r.ok) {
    let msg = r.statusText;
    try { msg = (await r.json()).detail || msg; } catch (e) {}
    throw new Error(`${r.status}: ${typeof msg === "string" ? msg : JSON.stringify(msg)}`);
  }
  return r;
}
const getJSON = async (p) => (await api("GET", p)).json();
const postJSON = async (p, b) => (await api("POST", p, b === undefined ? {} : b)).json();

function say(text, kind) { const m = $("msg"); m.textContent = text; m.className = kind || ""; }
async function guarded(fn) {
  if (S.busy) return;
  S.busy = true; document.body.style.cursor = "progress";
  try { await fn(); } catch (e) { say(e.message, "err"); console.error(e); }
  finally { S.busy = false; document.body.style.cursor = ""; }
}

// ------------------------------------------------------------ images
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
function draw() {
  const cv = $("view"), ctx = cv.getContext("2d");
  if (!S.base) return;
  const W = S.base.width, H = S.base.height, box = $("viewer");
  const scale = Math.min((box.clientWidth - 16) / W, (box.clientHeight - 16) / H);  // fit, keep the aspect ratio
  cv.width = Math.max(1, Math.round(W * scale)); cv.height = Math.max(1, Math.round(H * scale));
  cv.style.width = cv.width + "px"; cv.style.height = cv.height + "px";
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(S.base, 0, 0, cv.width, cv.height);
  const L = S.layers;
  if ($("show-unc").checked && L.unc) ctx.drawImage(L.unc, 0, 0, cv.width, cv.height);
  if ($("show-adv").checked && L.advice) for (const a of L.advice) ctx.drawImage(a, 0, 0, cv.width, cv.height);
  if ($("show-mask").checked && L.mask) ctx.drawImage(L.mask, 0, 0, cv.width, cv.height);
  S.scale = scale;
}
async function loadSlice() {
  const q = S.ndim === 3 ? `?z=${S.z}` : "";
  const im = await getJSON(`/api/sessions/${S.sid}/image${q}`);
  if (im.kind === "rgb") im.png = await loadPNG(im.png); else im.data = floats(im.data);
  S.img = im;
  if (im.kind === "grey" && !S.wl) autoWL();
  renderBase();
}
function autoWL() {
  const im = S.img; S.wl = { window: Math.max(im.hi - im.lo, 1e-3), level: (im.hi + im.lo) / 2 };
  syncWL();
}
function syncWL() {
  if (!S.wl) return;
  const ww = $("ww"), wl = $("wl");
  const lo = Math.min(S.img.min, -1200), hi = Math.max(S.img.max, 3000);
  ww.min = 1; ww.max = Math.max(4000, hi - lo); wl.min = lo; wl.max = hi;
  ww.step = wl.step = (hi - lo) > 50 ? 1 : 0.01;
  ww.value = S.wl.window; wl.value = S.wl.level;
  $("ww-val").textContent = (+S.wl.window).toFixed(0); $("wl-val").textContent = (+S.wl.level).toFixed(0);
}

// ---------------------------------------------------------- proposals
async function showProposal(p) {
  S.prop = p;
  const L = (S.layers = {});
  $("st-iter").textContent = p && p.iteration ? p.iteration : "–";
  $("st-time").textContent = p && p.seconds !== undefined ? `${(p.seconds * 1000).toFixed(0)} ms` : "–";
  $("st-area").textContent = p && p.area !== undefined ? p.area : "–";
  $("st-unc").textContent = p && p.uncertainty_max !== undefined ? p.uncertainty_max.toFixed(2) : "–";
  const box = $("cands"); box.innerHTML = "";
  $("advice").textContent = "";
  if (!p || !p.mask) { box.innerHTML = '<div class="hint">Click on the structure to see candidates.</div>'; draw(); return; }
  L.mask = await loadPNG(p.mask);
  L.unc = await loadPNG(p.uncertainty);
  L.advice = await Promise.all((p.advice || []).map((a) => loadPNG(a.mask)));
  if (p.advice && p.advice.length) $("advice").textContent = `${p.advice.length} advice region(s) outlined in amber: check these first.`;
  if (!p.candidates || !p.candidates.length) box.innerHTML = '<div class="hint">This model offers no candidates; click again to refine.</div>';
  for (const c of p.candidates || []) {
    const el = document.createElement("div"); el.className = "cand"; el.dataset.k = c.index;
    const cv = document.createElement("canvas"); cv.width = S.base.width; cv.height = S.base.height;
    const ctx = cv.getContext("2d");
    ctx.drawImage(S.base, 0, 0);
    ctx.globalAlpha = 0.5; ctx.drawImage(L.mask, 0, 0); ctx.globalAlpha = 1;
    ctx.drawImage(await loadPNG(c.diff), 0, 0);
    el.innerHTML = `<span class="num">${c.index + 1}</span>`;
    el.appendChild(cv);
    const lab = document.createElement("div"); lab.className = "lab";
    lab.innerHTML = `<span><span class="p">+${c.added}</span> / <span class="m">−${c.removed}</span></span><span>${c.area} px</span>`;
    el.appendChild(lab);
    el.onclick = () => choose(c.index);
    box.appendChild(el);
  }
  draw();
}
function setStatus(st) {
  const b = $("status-badge"); b.textContent = st || "—"; b.className = "badge " + (st || "");
  const accepted = st === "accepted";
  for (const e of document.querySelectorAll(".exp")) e.disabled = !accepted;
  $("accept").disabled = accepted || !S.prop || !S.prop.mask;
}

// -------------------------------------------------------------- actions
async function openSession(desc) {
  S.sid = desc.session_id; S.shape = desc.shape; S.ndim = desc.ndim; S.wl = null; S.prop = null;
  S.z = S.ndim === 3 ? Math.floor(desc.shape[0] / 2) : 0;
  $("empty").classList.add("hidden");
  $("case-title").textContent = `${desc.case_id || "upload"} · ${desc.shape.join("×")}${desc.modality ? " · " + desc.modality : ""}`;
  $("slice-ctl").classList.toggle("hidden", S.ndim !== 3);
  if (S.ndim === 3) { $("slice").max = desc.shape[0] - 1; $("slice").value = S.z; $("slice-val").textContent = S.z; }
  await loadSlice();
  $("wl-ctl").classList.toggle("hidden", S.img.kind !== "grey");
  if (desc.modality === "CT") { $("preset").value = "soft"; applyPreset("soft"); }
  $("exp-dcm").classList.toggle("hidden", !(desc.exports || []).includes("dcm"));
  $("exp-png").classList.toggle("hidden", !(desc.exports || []).includes("png"));
  const p = desc.has_proposal ? await getJSON(`/api/sessions/${S.sid}/proposal`) : null;
  if (p && p.z !== null && p.z !== undefined) { S.z = p.z; await loadSlice(); }
  await showProposal(p);
  setStatus(desc.status);
  say(desc.profile_applied ? "Opened with your preference profile. Click once on the structure." : "Click once on the structure.", "ok");
  refreshSessions();
}
function openCase(caseId) {
  return guarded(async () => {
    S.caseId = caseId;
    for (const e of document.querySelectorAll(".case")) e.classList.toggle("active", e.dataset.id === caseId);
    say(`Opening ${caseId}… (computing the image embedding)`);
    const d = await postJSON("/api/sessions", { case_id: caseId, use_profile: $("use-profile").checked });
    await openSession(d);
  });
}
function upload(file) {
  return guarded(async () => {
    say(`Uploading ${file.name}…`);
    const fd = new FormData(); fd.append("file", file, file.name);
    fd.append("use_profile", $("use-profile").checked ? "true" : "false");
    const d = await (await api("POST", "/api/sessions", fd)).json();
    await openSession(d);
  });
}
function resume(sid) {
  return guarded(async () => { await openSession(await getJSON(`/api/sessions/${sid}`)); });
}
function clickAt(ev) {
  if (!S.sid || !S.base) return;
  ev.preventDefault();
  const r = $("view").getBoundingClientRect();
  const sx = S.base.width / r.width, sy = S.base.height / r.height;
  const x = (ev.clientX - r.left) * sx - 0.5, y = (ev.clientY - r.top) * sy - 0.5;  // pixel centres at integers
  const positive = !(ev.shiftKey || ev.button === 2 || S.negative);
  const body = { x, y, positive };
  if (S.ndim === 3) body.z = S.z;
  return guarded(async () => {
    say(`${positive ? "Include" : "Exclude"} click at (${x.toFixed(0)}, ${y.toFixed(0)}${S.ndim === 3 ? ", " + S.z : ""})…`);
    const p = await postJSON(`/api/sessions/${S.sid}/click`, body);
    await showProposal(p); setStatus(p.status); refreshSessions();
    say(`Proposal ${p.iteration}: pick a candidate (1–${(p.candidates || []).length || "–"}), click again, or accept.`, "ok");
  });
}
function choose(k) {
  if (!S.sid || !S.prop || !S.prop.candidates || k >= S.prop.candidates.length) return;
  return guarded(async () => {
    const p = await postJSON(`/api/sessions/${S.sid}/choose`, { candidate: k });
    await showProposal(p); setStatus(p.status);
    say(`Candidate ${k + 1} chosen → proposal ${p.iteration}.`, "ok");
  });
}
function undo() {
  if (!S.sid) return;
  return guarded(async () => {
    const p = await postJSON(`/api/sessions/${S.sid}/undo`);
    await showProposal(p.mask ? p : null); setStatus(p.status);
    say("Undone.", "ok");
  });
}
function accept() {
  if (!S.sid || !S.prop || !S.prop.mask) return;
  return guarded(async () => {
    const a = await postJSON(`/api/sessions/${S.sid}/accept`);
    setStatus("accepted");
    say(`Accepted (${a.area} px after ${a.iteration} interaction(s)). Export it, or open the next case.`, "ok");
    $("profile-state").textContent = "(saved)";
    refreshSessions();
  });
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
  });
}
async function setSlice(z) {
  if (S.ndim !== 3) return;
  z = Math.max(0, Math.min(S.shape[0] - 1, z)); if (z === S.z) return;
  S.z = z; $("slice").value = z; $("slice-val").textContent = z;
  await loadSlice();
  if (S.prop && S.prop.mask) await showProposal(await getJSON(`/api/sessions/${S.sid}/proposal?z=${z}`)); else draw();
}
function applyPreset(name) {
  const P = { lung: [1500, -600], soft: [400, 40], bone: [1800, 400], brain: [80, 40] };
  if (name === "auto") autoWL(); else S.wl = { window: P[name][0], level: P[name][1] };
  syncWL(); renderBase(); draw();
}

// -------------------------------------------------------------- panels
async function refreshCases() {
  const d = await getJSON("/api/cases");
  $("ranked").textContent = d.ranked_by ? "· ranked by predicted disagreement" : "";
  const box = $("cases"); box.innerHTML = "";
  if (!d.cases.length) box.innerHTML = '<div class="hint">No worklist (start the server with --data PATH) — upload an image below.</div>';
  const top = Math.max(1e-9, ...d.cases.map((c) => c.predicted_disagreement || 0));
  d.cases.forEach((c, i) => {
    const el = document.createElement("div"); el.className = "case"; el.dataset.id = c.case_id;
    const ranked = c.predicted_disagreement !== undefined;
    const frac = ranked ? (100 * c.predicted_disagreement) / top : 0;
    el.innerHTML = `<span class="rank">${c.rank || i + 1}</span><span class="id"></span>` +
      (ranked ? `<span class="bar" title="predicted disagreement ${c.predicted_disagreement.toFixed(3)}"><i style="width:${frac}%"></i></span>` : "<span></span>");
    el.querySelector(".id").textContent = c.case_id; el.querySelector(".id").title = c.case_id;
    el.onclick = () => openCase(c.case_id);
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
      el.querySelector(".id").textContent = s.case_id || "upload";
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
    $("user-name").textContent = "user: " + S.info.user;
    $("profile-state").textContent = S.info.has_profile ? "(saved profile)" : "(none yet)";
    await refreshCases(); await refreshSessions();
    say("Ready. Select a case or upload an image.");
  } catch (e) { say(e.message + (e.message.startsWith("401") ? " — enter the access token (top right)" : ""), "err"); }
}

// -------------------------------------------------------------- wiring
$("token").onchange = () => { localStorage.setItem("clinloop.token", $("token").value.trim()); init(); };
$("file").onchange = (e) => { if (e.target.files[0]) upload(e.target.files[0]); e.target.value = ""; };
$("view").addEventListener("mousedown", clickAt);
$("view").addEventListener("contextmenu", (e) => e.preventDefault());
$("view").addEventListener("wheel", (e) => { if (S.ndim === 3) { e.preventDefault(); guarded(() => setSlice(S.z + Math.sign(e.deltaY))); } }, { passive: false });
$("slice").oninput = (e) => guarded(() => setSlice(+e.target.value));
$("ww").oninput = (e) => { S.wl.window = +e.target.value; $("ww-val").textContent = (+e.target.value).toFixed(0); renderBase(); draw(); };
$("wl").oninput = (e) => { S.wl.level = +e.target.value; $("wl-val").textContent = (+e.target.value).toFixed(0); renderBase(); draw(); };
$("preset").onchange = (e) => applyPreset(e.target.value);
for (const id of ["show-mask", "show-unc", "show-adv"]) $(id).onchange = draw;
$("mode-pos").onclick = () => { S.negative = false; $("mode-pos").classList.add("active"); $("mode-neg").classList.remove("active"); };
$("mode-neg").onclick = () => { S.negative = true; $("mode-neg").classList.add("active"); $("mode-pos").classList.remove("active"); };
$("undo").onclick = undo;
$("accept").onclick = accept;
for (const b of document.querySelectorAll(".exp")) b.onclick = () => exportMask(b.dataset.fmt);
document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT" && e.target.type !== "range" && e.target.type !== "checkbox") return;
  if (e.key >= "1" && e.key <= "9") { choose(+e.key - 1); e.preventDefault(); }
  else if (e.key === "Enter") { accept(); e.preventDefault(); }
  else if ((e.key === "z" && (e.ctrlKey || e.metaKey)) || e.key === "u" || e.key === "U") { undo(); e.preventDefault(); }
  else if (e.key === "h" || e.key === "H") { $("show-unc").checked = !$("show-unc").checked; draw(); }
  else if (e.key === "ArrowUp" || e.key === "PageUp") { guarded(() => setSlice(S.z + 1)); e.preventDefault(); }
  else if (e.key === "ArrowDown" || e.key === "PageDown") { guarded(() => setSlice(S.z - 1)); e.preventDefault(); }
});
window.addEventListener("resize", draw);
setStatus(null);
init();
