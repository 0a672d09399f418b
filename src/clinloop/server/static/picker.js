// clinloop workstation: the model picker. A server started with several models
// (`clinloop serve --model spa-general --model mecca-lidc3d`) lists them in GET /api/info
// (`models`); the picker in the header chooses the model of new sessions (POST /api/sessions
// `model`). An open session keeps its own model (the picker shows it); choosing another one
// while a worklist case is open starts a new session of that case with it.
"use strict";

function fillModels(info) {  // called by init(): a picker only when there is a choice
  const ms = (info && info.models) || [], sel = $("model-pick");
  S.pick = null;
  sel.classList.toggle("hidden", ms.length < 2);
  $("model-name").classList.toggle("hidden", ms.length >= 2);
  if (ms.length < 2) return;
  sel.innerHTML = "";
  for (const m of ms) {
    const o = document.createElement("option"); o.value = m.name;
    o.textContent = `model: ${m.name}${m.spatial_ndims.includes(2) ? "" : " (volumes)"}`;
    sel.appendChild(o);
  }
  sel.value = S.pick = info.model;
}
function showModel(name) {  // openSession(): the picker shows the open session's model
  if (S.pick !== null && name) { $("model-pick").value = S.pick = name; }
}
$("model-pick").onchange = (e) => {
  S.pick = e.target.value;
  if (S.caseId && S.sid) {
    say(`Segmenting this case again with ${S.pick} (a new session; the other one is kept).`);
    openCase(S.caseId, true);
  } else say(`New sessions use ${S.pick}.`, "ok");
};
