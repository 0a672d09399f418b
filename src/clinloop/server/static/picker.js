// clinloop workstation: the model picker. A server started with several models
// (`clinloop serve --model spa-general --model mecca-lidc3d`) lists them in GET /api/info
// (`models`); the picker in the header chooses the model of new sessions (POST /api/sessions
// `model`). An open session keeps its own model (the picker shows it); choosing another one
// while a worklist case is open starts a new session of that case with it.
"use strict";

function fillStructures() {  // the upload's structure field lists the chosen model's own structures
  const ms = (S.info && S.info.models) || [], name = S.pick || (S.info && S.info.model);
  const m = ms.find((x) => x.name === name), list = $("structure-names");
  list.innerHTML = "";
  for (const s of (m && m.structures) || []) {
    const o = document.createElement("option"); o.value = s; list.appendChild(o);
  }
}
function fillModels(info) {  // called by init(): a picker only when there is a choice
  const ms = (info && info.models) || [], sel = $("model-pick");
  S.pick = null;
  sel.classList.toggle("hidden", ms.length < 2);
  $("model-name").classList.toggle("hidden", ms.length >= 2);
  fillStructures();
  if (ms.length < 2) return;
  sel.innerHTML = "";
  for (const m of ms) {
    const o = document.createElement("option"); o.value = m.name;
    o.textContent = `model: ${m.name}${m.spatial_ndims.includes(2) ? "" : " (volumes)"}`;
    sel.appendChild(o);
  }
  sel.value = S.pick = info.model;
  fillStructures();
}
function showModel(name) {  // openSession(): the picker shows the open session's model
  if (S.pick !== null && name) { $("model-pick").value = S.pick = name; fillStructures(); }
}
$("model-pick").onchange = (e) => {
  S.pick = e.target.value;
  fillStructures();
  if (S.caseId && S.sid) {
    say(`Segmenting this case again with ${S.pick} (a new session; the other one is kept).`);
    openCase(S.caseId, true);
  } else say(`New sessions use ${S.pick}.`, "ok");
};
