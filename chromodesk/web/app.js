// ChromoDesk web page: upload one metaphase (and its VOC XML), show what /api/analyze answers.
// Plain JS, no library, nothing fetched from anywhere but this server.
"use strict";

const CLASSES = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16", "17",
  "18", "19", "20", "21", "22", "X", "Y"];
const SURE = 0.9;   // as the desktop app and the annotated PNG: green at or above
const UNSURE = 0.6; // red below

const $ = (id) => document.getElementById(id);
const state = { image: null, xml: null, limit: null, busy: false, rows: [], sortKey: "id", sortUp: true };

function text(el, value) { el.textContent = value; }

function showError(message) {
  const el = $("error");
  text(el, message);
  el.hidden = !message;
}

function sizeText(bytes) {
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1024))} kB`;
}

function refreshChoice() {
  const parts = [];
  if (state.image) parts.push(`image: ${state.image.name} (${sizeText(state.image.size)})`);
  if (state.xml) parts.push(`annotation: ${state.xml.name}`);
  else if (state.image) parts.push("no annotation: the chromosomes will be detected");
  text($("chosen"), parts.length ? parts.join(" · ") : "No image chosen.");
  $("analyse").disabled = !state.image || state.busy;
  $("clear").disabled = (!state.image && !state.xml) || state.busy;
}

function isXml(file) {
  return /\.xml$/i.test(file.name) || /xml/.test(file.type);
}

function take(files) {
  for (const file of files) {
    if (isXml(file)) state.xml = file;
    else state.image = file;
  }
  showError("");
  refreshChoice();
}

// -- server status ------------------------------------------------------------------------------
async function loadHealth() {
  try {
    const response = await fetch("/api/health");
    const health = await response.json();
    state.limit = health.limits && health.limits.upload_bytes;
    const detector = health.detector ? ` · detector ${health.detector}` : "";
    text($("health"), `ChromoDesk ${health.version} · model ${health.model_id} · ${health.device}${detector}`);
  } catch (err) {
    text($("health"), "server not reachable");
  }
}

// -- upload and analysis ------------------------------------------------------------------------
function setProgress(stage, fraction) {
  $("progress").hidden = false;
  const bar = $("bar");
  if (fraction === null) bar.removeAttribute("value"); // indeterminate: the server is working
  else bar.value = Math.round(fraction * 100);
  text($("stage"), stage);
}

function analyse() {
  if (!state.image || state.busy) return;
  const total = state.image.size + (state.xml ? state.xml.size : 0);
  if (state.limit && total > state.limit) {
    showError(`${state.image.name}: ${sizeText(total)} is above this server's upload limit of ${sizeText(state.limit)}`);
    return;
  }
  const form = new FormData();
  form.append("image", state.image, state.image.name);
  if (state.xml) form.append("annotations", state.xml, state.xml.name);
  const xhr = new XMLHttpRequest(); // fetch() reports no upload progress
  xhr.open("POST", "/api/analyze");
  xhr.responseType = "json";
  xhr.upload.onprogress = (event) => {
    if (event.lengthComputable) setProgress(`uploading… ${sizeText(event.loaded)} of ${sizeText(event.total)}`, event.loaded / event.total);
  };
  xhr.upload.onload = () => setProgress("analysing…", null);
  xhr.onload = () => {
    finish();
    const body = xhr.response;
    if (xhr.status === 200 && body) show(body);
    else showError((body && body.error) || `the server answered ${xhr.status} ${xhr.statusText}`);
  };
  xhr.onerror = () => { finish(); showError("the upload failed: the server closed the connection or is not running"); };
  state.busy = true;
  showError("");
  refreshChoice();
  setProgress("uploading…", 0);
  xhr.send(form);
}

function finish() {
  state.busy = false;
  $("progress").hidden = true;
  refreshChoice();
}

// -- results --------------------------------------------------------------------------------
function flagText(flag) {
  if (flag.type === "gain") return `+${flag.label} (${flag.count} copies)`;
  if (flag.type === "loss") return `−${flag.label} (${flag.count} copy)`;
  if (flag.type === "sex") return `sex chromosomes ${flag.label}`;
  return `${flag.label}: ${flag.count}`;
}

function stateOf(row) {
  if (row.not_a_chromosome) return "rejected";
  if (row.confidence === null || row.confidence === undefined) return "none";
  return row.confidence >= SURE ? "high" : row.confidence >= UNSURE ? "medium" : "low";
}

function secondBest(row) {
  const entries = Object.entries(row.probabilities || {}).sort((a, b) => b[1] - a[1]);
  return entries.length > 1 ? { label: entries[1][0], p: entries[1][1] } : null;
}

function show(result) {
  $("results").hidden = false;
  text($("result-name"), result.image || "");
  text($("iscn"), result.iscn || "?");
  const shown = result.chromosomes.filter((c) => !c.not_a_chromosome);
  const rejected = result.chromosomes.length - shown.length;
  text($("count"), `${result.count}${rejected ? ` (+${rejected} not a chromosome)` : ""}`);
  text($("cell-confidence"), result.cell_confidence !== undefined ? result.cell_confidence.toFixed(2) : "–");
  text($("boxes-source"), result.boxes_source === "annotations" ? "the VOC annotation" : "the detector");
  const unsure = shown.filter((c) => c.confidence !== null && c.confidence < SURE).length;
  text($("to-review"), `${unsure} below ${SURE.toFixed(2)}`);
  text($("model-id"), result.model_id || "?");

  const flags = $("flags");
  flags.replaceChildren();
  const findings = (result.flags || []).filter((f) => f.type !== "total");
  for (const flag of findings) {
    const li = document.createElement("li");
    li.className = `flag ${flag.type}`;
    text(li, flagText(flag));
    flags.append(li);
  }
  if (!findings.length) {
    const li = document.createElement("li");
    li.className = "flag none";
    text(li, "no numerical anomaly");
    flags.append(li);
  }
  const warnings = $("warnings");
  warnings.replaceChildren();
  for (const warning of result.warnings || []) {
    const li = document.createElement("li");
    text(li, warning);
    warnings.append(li);
  }

  const outputs = result.outputs || {};
  for (const [id, kind] of [["dl-csv", "csv"], ["dl-karyogram", "karyogram"], ["dl-annotated", "annotated"], ["dl-voc", "voc"]]) {
    const link = $(id);
    link.hidden = !outputs[kind];
    if (outputs[kind]) link.href = outputs[kind];
  }
  for (const kind of ["annotated", "karyogram"]) {
    $(kind).src = outputs[kind] || "";
    $(`${kind}-link`).href = outputs[kind] || "#";
  }

  state.rows = result.chromosomes.map((c) => ({ ...c, second: secondBest(c) }));
  renderTable();
  $("results").scrollIntoView({ behavior: "smooth", block: "start" });
}

function sortValue(row, key) {
  if (key === "label" || key === "predicted_label" || key === "file_label") {
    const index = CLASSES.indexOf(row[key]);
    return index < 0 ? 99 : index;
  }
  if (key === "confidence") return row.confidence === null ? -1 : row.confidence;
  if (key === "second") return row.second ? row.second.p : -1;
  return row[key] || "";
}

function renderTable() {
  const key = state.sortKey;
  const rows = [...state.rows].sort((a, b) => {
    const va = sortValue(a, key), vb = sortValue(b, key);
    const order = va < vb ? -1 : va > vb ? 1 : (a.id < b.id ? -1 : 1);
    return state.sortUp ? order : -order;
  });
  for (const th of document.querySelectorAll("#chromosomes th")) {
    th.setAttribute("aria-sort", th.dataset.key === key ? (state.sortUp ? "ascending" : "descending") : "none");
  }
  const body = document.querySelector("#chromosomes tbody");
  body.replaceChildren();
  for (const row of rows) {
    const tr = document.createElement("tr");
    tr.className = stateOf(row);
    const label = row.not_a_chromosome ? "✗ not a chromosome" : (row.label || "?");
    const confidence = row.confidence === null || row.confidence === undefined ? "–" : row.confidence.toFixed(2);
    const second = row.second ? `${row.second.label} (${row.second.p.toFixed(2)})` : "–";
    const fileLabel = row.file_label || row.file_name || "–";
    const cells = [row.id, label, null, row.predicted_label || "–", second, fileLabel, row.origin];
    cells.forEach((value, i) => {
      const td = document.createElement("td");
      if (i === 2) {
        const track = document.createElement("span");
        track.className = "conf-track";
        const bar = document.createElement("span");
        bar.className = "conf-bar";
        bar.style.width = `${Math.round((row.confidence || 0) * 100)}%`;
        track.append(bar);
        const number = document.createElement("span");
        text(number, confidence);
        td.append(number, track);
        td.className = "conf";
      } else {
        text(td, value);
      }
      if (i === 5 && row.file_label && row.label && row.file_label !== row.label && !row.not_a_chromosome) {
        td.className = "differs";
        td.title = "the annotation file says otherwise";
      }
      tr.append(td);
    });
    body.append(tr);
  }
}

// -- wiring -------------------------------------------------------------------------------------
function init() {
  $("image-input").addEventListener("change", (e) => { if (e.target.files.length) take([e.target.files[0]]); });
  $("xml-input").addEventListener("change", (e) => { if (e.target.files.length) state.xml = e.target.files[0]; refreshChoice(); });
  $("analyse").addEventListener("click", analyse);
  $("clear").addEventListener("click", () => {
    state.image = state.xml = null;
    $("image-input").value = $("xml-input").value = "";
    showError("");
    refreshChoice();
  });
  const drop = $("drop");
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => take(e.dataTransfer.files));
  // a file dropped next to the zone must not make the browser leave the page to show it
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  for (const th of document.querySelectorAll("#chromosomes th")) {
    th.addEventListener("click", () => {
      state.sortUp = state.sortKey === th.dataset.key ? !state.sortUp : true;
      state.sortKey = th.dataset.key;
      renderTable();
    });
  }
  refreshChoice();
  loadHealth();
}

init();
