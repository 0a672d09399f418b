// clinloop workstation: volume progress (app.js wraps each model step in volumeStep).
// One click on a volume follows the structure through the slices (SPA): the
// request answers when the 3-D mask is done; meanwhile GET .../progress?since=N
// (no session lock) streams the masks of the slices finished so far: the slice
// strip marks them and the shown slice's mask is drawn as soon as it arrives
// (S.partial; the canvas's data-streamed lists the slices received).
"use strict";

async function volumeStep(request) {
  if (S.ndim !== 3) return request();
  const sid = S.sid;
  let running = true, run = null, got = 0;
  S.partial = {}; $("view").dataset.streamed = ""; $("view").dataset.maskFrom = S.prop ? "proposal" : "";
  const poll = (async () => {
    while (running) {
      await new Promise((r) => setTimeout(r, 250));
      if (!running || sid !== S.sid) break;
      try {
        const r = await fetch(`/api/sessions/${sid}/progress?since=${got}`, { headers: headers(false) });
        if (!r.ok) break;
        const pr = await r.json();
        if (!running || !pr.running || pr.axis !== 0) continue;  // an earlier step's count, or another axis
        if (run !== null && pr.run !== run) { run = pr.run; got = 0; S.partial = {}; continue; }  // a newer step
        run = pr.run;
        await streamSlices(pr.slices);
        got += pr.slices.length;
        S.vstate = { ...(S.vstate || {}), slice_areas: pr.slice_areas };
        sliceStrip();
        busy(`Following the structure: ${pr.done} slice(s) done (at most ${pr.total})…`);
      } catch (e) { break; }
    }
  })();
  try { return await request(); } finally { running = false; poll.catch(() => {}); }
}
async function streamSlices(slices) {  // masks of newly finished slices -> S.partial; redraw the shown one
  for (const sl of slices) {
    if (sl.axis !== 0) continue;
    S.partial[sl.index] = { area: sl.area, png: await loadPNG(sl.mask) };
  }
  $("view").dataset.streamed = Object.keys(S.partial).sort((a, b) => a - b).join(" ");
  const cur = S.partial[S.z];
  if (cur && slices.some((sl) => sl.index === S.z)) {
    const L = S.layers;
    L.mask = splitMask(cur.png, [0, 200, 255]); L.unc = null; L.diffs = []; L.advice = []; S.preview = null;
    $("view").dataset.maskFrom = "partial";
    draw();
  }
}
