// cxreader web page: upload a study, look at its findings and heatmaps, search the records.
// Plain JavaScript, no build step. The API key lives in sessionStorage (this tab only) and is sent as
// "Authorization: Bearer <key>" with every API call; images are fetched with it and shown as blob URLs.
// Record data is only ever inserted with textContent, never as HTML.
"use strict";

const KEY_STORAGE = "cxreader.apiKey";
const LATERAL_VIEWS = new Set(["LL", "RL", "LAT", "LATERAL"]);

const state = {
  key: sessionStorage.getItem(KEY_STORAGE) || "",
  model: null,
  study: null,
  selected: null,
  layerUrls: new Map(),
  objectUrls: [],
  search: { offset: 0, limit: 20, params: null },
};

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.key) headers.set("Authorization", `Bearer ${state.key}`);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (error) {
    throw new ApiError(0, "the server cannot be reached");
  }
  if (response.status === 401) {
    showKeyPanel("The server refused the API key. Enter a valid key.");
    throw new ApiError(401, "a valid API key is required");
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (typeof body.detail === "string") message = body.detail;
      else if (Array.isArray(body.detail)) message = body.detail.map((item) => item.msg).join("; ");
    } catch (error) {
      // not JSON: keep the status line
    }
    throw new ApiError(response.status, message);
  }
  return response;
}

async function apiJson(path, options) {
  return (await api(path, options)).json();
}

async function apiObjectUrl(path) {
  const blob = await (await api(path)).blob();
  const url = URL.createObjectURL(blob);
  state.objectUrls.push(url);
  return url;
}

function releaseObjectUrls() {
  for (const url of state.objectUrls) URL.revokeObjectURL(url);
  state.objectUrls = [];
  state.layerUrls = new Map();
}

function element(tag, { text, className, title } = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  if (title) node.title = title;
  return node;
}

function show(node, visible = true) {
  node.classList.toggle("hidden", !visible);
}

function fmt(value, digits = 2) {
  return Number(value).toFixed(digits);
}

function setStatus(node, message, kind = "") {
  node.textContent = message;
  node.className = `status ${kind}`.trim();
}

// --- API key and model -----------------------------------------------------------------------------------

function showKeyPanel(message) {
  show($("key-panel"));
  const error = $("key-error");
  error.textContent = message || "";
  show(error, Boolean(message));
  $("api-key").focus();
}

async function loadModel() {
  try {
    const model = await apiJson("/api/model");
    state.model = model;
    show($("key-panel"), false);
    const point = model.operating_point ? ` · operating point: ${model.operating_point.rule}` : "";
    $("model-name").textContent = `model: ${model.model_name} · ${model.file}${point}`;
    $("model-name").title = `sha256 ${model.sha256}`;
    show($("model-synthetic"), model.synthetic);
    show($("synthetic-banner"), model.synthetic);
    $("disclaimer").textContent = model.disclaimer;
    fillFindingSelect(model.labels, model.label_space || []);
    await fillModelSelect();
    return true;
  } catch (error) {
    if (error.status !== 401) setStatus($("upload-status"), `Cannot load the model: ${error.message}`, "error");
    return false;
  }
}

// The search's finding list: this model's findings (its checkpoint's labels, in its order), then the other
// findings of the label space, which results of other stored models may have.
function fillFindingSelect(labels, labelSpace) {
  const select = $("search-finding");
  if (select.options.length > 1) return;
  const option = (label) => {
    const item = element("option", { text: label.replace(/_/g, " ") });
    item.value = label;
    return item;
  };
  const others = labelSpace.filter((label) => !labels.includes(label));
  const own = others.length ? document.createElement("optgroup") : select;
  if (others.length) {
    own.label = "this model's findings";
    select.append(own);
  }
  for (const label of labels) own.append(option(label));
  if (others.length) {
    const group = document.createElement("optgroup");
    group.label = "other models' findings";
    for (const label of others) group.append(option(label));
    select.append(group);
  }
}

function modelLabel(model) {
  if (!model) return "—";
  return `${model.name || "model"} ${model.sha256.slice(0, 8)}${model.synthetic ? " SYNTHETIC" : ""}`;
}

async function fillModelSelect() {
  const select = $("search-model");
  try {
    const models = await apiJson("/api/models");
    select.replaceChildren(select.options[0]);
    for (const model of models) {
      const option = element("option", { text: `${modelLabel(model)} (${model.images} images)` });
      option.value = model.sha256;
      select.append(option);
    }
  } catch (error) {
    // The search still works without the list (every model's newest result).
  }
}

// --- tabs --------------------------------------------------------------------------------------------------

function selectTab(name) {
  for (const tab of ["read", "search"]) {
    const active = tab === name;
    $(`tab-${tab}`).classList.toggle("active", active);
    $(`tab-${tab}`).setAttribute("aria-selected", String(active));
    show($(`panel-${tab}`), active);
  }
}

// --- reading a study ---------------------------------------------------------------------------------------

async function uploadStudy(event) {
  event.preventDefault();
  const file = $("file-input").files[0];
  if (!file) return;
  const status = $("upload-status");
  setStatus(status, `Reading ${file.name}… the model is analysing the image.`, "busy");
  $("analyse").disabled = true;
  const form = new FormData();
  form.append("file", file);
  try {
    const study = await apiJson("/api/studies", { method: "POST", body: form });
    const verb = study.created ? "Stored as" : "Already on record as";
    setStatus(status, `${verb} study #${study.id}.`, "ok");
    await showStudy(study);
  } catch (error) {
    clearStudy();  // the previous study's findings must not stand under this file's error
    setStatus(status, `Not read: ${error.message}`, "error");
  } finally {
    $("analyse").disabled = false;
  }
}

async function openStudy(id) {
  selectTab("read");
  const status = $("upload-status");
  setStatus(status, `Opening study #${id}…`, "busy");
  try {
    const study = await apiJson(`/api/studies/${encodeURIComponent(id)}`);
    setStatus(status, `Study #${study.id} from the records.`, "ok");
    await showStudy(study);
  } catch (error) {
    clearStudy();
    setStatus(status, `Cannot open study #${id}: ${error.message}`, "error");
  }
}

// Empty and hide the result panel: findings, descriptions, image, heatmap and box.
function clearStudy() {
  releaseObjectUrls();
  state.study = null;
  state.selected = null;
  show($("result"), false);
  $("study-title").textContent = "Study";
  show($("study-synthetic"), false);
  for (const id of ["study-meta", "positives", "findings-body"]) $(id).replaceChildren();
  for (const id of ["viewer-image", "heatmap-layer"]) $(id).removeAttribute("src");
  show($("heatmap-layer"), false);
  const box = $("finding-box");
  box.dataset.present = "";
  show(box, false);
  show($("marker-r"), false);
  show($("marker-l"), false);
  $("heatmap-name").textContent = "no finding selected";
  $("open-overlay").disabled = true;
}

function metaRow(list, label, value) {
  list.append(element("dt", { text: label }), element("dd", { text: value ?? "—" }));
}

async function showStudy(study) {
  releaseObjectUrls();
  state.study = study;
  state.selected = null;
  show($("result"));
  $("study-title").textContent = `Study #${study.id}`;
  show($("study-synthetic"), study.synthetic);

  const meta = $("study-meta");
  meta.replaceChildren();
  metaRow(meta, "Patient ID", study.patient_id);
  metaRow(meta, "Study date", study.study_date);
  metaRow(meta, "View", study.view_position ? study.view_position : "not stated (PA assumed)");
  metaRow(meta, "Modality", study.modality);
  metaRow(meta, "Model", study.model ? `${modelLabel(study.model)} · sha256 ${study.model.sha256}` : null);
  metaRow(meta, "Image size", study.width ? `${study.width} × ${study.height} px` : null);
  if (study.pixel_spacing_mm) metaRow(meta, "Pixel spacing", `${fmt(study.pixel_spacing_mm[0], 3)} mm`);
  metaRow(meta, "Stored", new Date(study.created_at).toLocaleString());
  renderDicomObjects(meta, study);
  if (study.status === "refused") metaRow(meta, "Not read", (study.gate && study.gate.reasons.join("; ")) || study.failure_reason);
  else if (study.status !== "ok") metaRow(meta, "Could not be read", study.failure_reason);

  renderPositives(study);
  renderFindings(study);

  const image = $("viewer-image");
  image.removeAttribute("src");
  show($("heatmap-layer"), false);
  show($("finding-box"), false);
  const frontal = !LATERAL_VIEWS.has((study.view_position || "").toUpperCase());
  show($("marker-r"), frontal && study.status === "ok");
  show($("marker-l"), frontal && study.status === "ok");
  if (study.links.image) {
    try {
      const url = await apiObjectUrl(study.links.image);
      if (state.study === study) image.src = url;  // not after a later upload failed and cleared the panel
    } catch (error) {
      setStatus($("upload-status"), `The image cannot be shown: ${error.message}`, "error");
    }
  }
  const first = study.positive_findings[0] || (study.findings[0] && study.findings[0].finding);
  $("heatmap-toggle").checked = study.positive_findings.length > 0;
  if (first) await selectFinding(first);
}

const DICOM_KINDS = { sr: "Report (SR)", overlay: "Overlay (Secondary Capture)", kos: "Key object (triage)" };

function renderDicomObjects(meta, study) {
  const kept = (study.dicom_objects || []).filter((item) => item.url);
  if (!kept.length) return;
  const links = element("dd", { className: "dicom-links" });
  for (const item of kept) {
    const button = element("button", {
      text: DICOM_KINDS[item.kind] || item.kind,
      className: "link-button",
      title: `SOP Instance UID ${item.sop_instance_uid}`,
    });
    button.type = "button";
    button.addEventListener("click", () => downloadFile(item.url, `study-${study.id}-${item.kind}.dcm`));
    links.append(button);
  }
  meta.append(element("dt", { text: "DICOM results" }), links);
}

async function downloadFile(path, name) {
  try {
    const url = await apiObjectUrl(path);
    const link = element("a");
    link.href = url;
    link.download = name;
    document.body.append(link);
    link.click();
    link.remove();
  } catch (error) {
    setStatus($("upload-status"), `Download failed: ${error.message}`, "error");
  }
}

function findingOf(name) {
  return state.study.findings.find((item) => item.finding === name);
}

function renderPositives(study) {
  const list = $("positives");
  list.replaceChildren();
  if (study.status === "refused") {
    const reasons = (study.gate && study.gate.reasons.join("; ")) || study.failure_reason;
    list.append(element("li", { text: `Not read: ${reasons}. The model gives no findings for this image.`, className: "none" }));
    return;
  }
  if (study.status !== "ok") {
    list.append(element("li", { text: "No result: the file could not be read.", className: "none" }));
    return;
  }
  if (study.positive_findings.length === 0) {
    list.append(element("li", { text: "No finding is above its operating threshold.", className: "none" }));
    return;
  }
  for (const name of study.positive_findings) {
    const finding = findingOf(name);
    const item = element("li", { className: "positive-item" });
    const head = element("button", { className: "positive-head" });
    head.type = "button";
    head.append(
      element("span", { text: finding.display_name, className: "positive-name" }),
      element("span", { text: `p ${fmt(finding.probability)} ≥ ${fmt(finding.threshold)}`, className: "positive-prob" }),
    );
    head.addEventListener("click", () => selectFinding(name, true));
    item.append(head);
    item.append(
      element("p", {
        text: finding.description || "No description (heatmaps are not available for this record).",
        className: "sentence",
      }),
    );
    if (finding.caption) {
      item.append(element("p", { text: `Learned caption: ${finding.caption}`, className: "caption" }));
    }
    list.append(item);
  }
}

function operatingPointTitle(name) {
  const point = state.model && state.model.operating_point;
  const achieved = point && point.findings && point.findings[name];
  if (!achieved || achieved.sensitivity == null) return "";
  return `${point.rule}: sensitivity ${fmt(achieved.sensitivity)}, specificity ${fmt(achieved.specificity)} on validation`;
}

function renderFindings(study) {
  const body = $("findings-body");
  body.replaceChildren();
  // As many rows as the model that read the study has labels (14 for a CheXNet model).
  const count = study.findings.length;
  $("findings-heading").textContent = count ? `All ${count} findings` : "All findings";
  for (const finding of study.findings) {
    const row = element("tr", { className: finding.above_threshold ? "above" : "" });
    row.dataset.finding = finding.finding;
    const name = element("td", { text: finding.display_name, className: "finding-name" });
    if (finding.above_threshold) name.append(element("span", { text: "above", className: "tag" }));
    const barCell = element("td");
    const bar = element("div", { className: "bar", title: `probability ${fmt(finding.probability, 3)}, threshold ${fmt(finding.threshold, 3)}` });
    const fill = element("div", { className: "bar-fill" });
    fill.style.width = `${(finding.probability * 100).toFixed(1)}%`;
    const tick = element("div", { className: "bar-threshold" });
    tick.style.left = `${(finding.threshold * 100).toFixed(1)}%`;
    bar.append(fill, tick);
    barCell.append(bar);
    const heat = element("td");
    if (finding.heatmap_url) {
      const button = element("button", { text: "Show", className: "small" });
      button.type = "button";
      button.addEventListener("click", () => selectFinding(finding.finding, true));
      heat.append(button);
    } else {
      heat.append(element("span", { text: "—", className: "muted" }));
    }
    row.append(
      name,
      barCell,
      element("td", { text: fmt(finding.probability), className: "num" }),
      element("td", { text: fmt(finding.threshold), className: "num", title: operatingPointTitle(finding.finding) }),
      heat,
    );
    body.append(row);
  }
}

async function selectFinding(name, turnOn = false) {
  const study = state.study;
  const finding = findingOf(name);
  if (!finding) return;
  state.selected = name;
  for (const row of $("findings-body").rows) row.classList.toggle("selected", row.dataset.finding === name);
  const mark = finding.above_threshold ? "above threshold" : "below threshold";
  $("heatmap-name").textContent = `${finding.display_name} · p ${fmt(finding.probability)} (threshold ${fmt(finding.threshold)}, ${mark})`;
  $("open-overlay").disabled = !finding.heatmap_url;
  if (turnOn) $("heatmap-toggle").checked = true;
  placeBox(finding, study);
  const layer = $("heatmap-layer");
  if (!finding.heatmap_url) {
    layer.removeAttribute("src");
    updateLayerVisibility();
    return;
  }
  try {
    let url = state.layerUrls.get(name);
    if (!url) {
      url = await apiObjectUrl(`${finding.heatmap_url}?layer=true`);
      state.layerUrls.set(name, url);
    }
    if (state.selected === name && state.study === study) layer.src = url;
  } catch (error) {
    setStatus($("upload-status"), `No heatmap for ${finding.display_name}: ${error.message}`, "error");
  }
  updateLayerVisibility();
}

function placeBox(finding, study) {
  const box = $("finding-box");
  if (!finding.box || !study.width || !study.height) {
    box.dataset.present = "";
    show(box, false);
    return;
  }
  const [x, y, w, h] = finding.box;
  box.style.left = `${(100 * x) / study.width}%`;
  box.style.top = `${(100 * y) / study.height}%`;
  box.style.width = `${(100 * w) / study.width}%`;
  box.style.height = `${(100 * h) / study.height}%`;
  box.dataset.present = "1";
}

// The radiograph fills the viewer (up- or down-scaled, aspect kept); the heatmap layer and the box are laid
// out in percent of it, so they follow.
function fitImage() {
  const image = $("viewer-image");
  if (!image.naturalWidth) return;
  const available = $("viewer").clientWidth - 24;
  const tallest = Math.max(320, Math.min(window.innerHeight * 0.72, 900));
  const scale = Math.min(available / image.naturalWidth, tallest / image.naturalHeight);
  image.style.width = `${Math.round(image.naturalWidth * scale)}px`;
  image.style.height = `${Math.round(image.naturalHeight * scale)}px`;
}

function updateLayerVisibility() {
  const on = $("heatmap-toggle").checked;
  const layer = $("heatmap-layer");
  show(layer, on && Boolean(layer.getAttribute("src")));
  layer.style.opacity = String($("heatmap-opacity").value / 100);
  const box = $("finding-box");
  show(box, on && box.dataset.present === "1");
}

async function downloadOverlay() {
  const finding = state.selected && findingOf(state.selected);
  if (!finding || !finding.heatmap_url) return;
  await downloadFile(finding.heatmap_url, `study-${state.study.id}-${finding.finding}.png`);
}

// --- search ------------------------------------------------------------------------------------------------

function searchParams() {
  const params = new URLSearchParams();
  const add = (name, value) => {
    if (value !== "" && value !== null && value !== undefined) params.set(name, value);
  };
  add("finding", $("search-finding").value);
  add("min_prob", $("search-min-prob").value);
  add("since", $("search-since").value);
  add("until", $("search-until").value);
  add("patient", $("search-patient").value.trim());
  add("text", $("search-text").value.trim());
  if ($("search-above").checked) params.set("above_threshold", "true");
  add("status", $("search-status").value);
  add("model", $("search-model").value);
  if ($("search-all-results").checked) params.set("all_results", "true");
  add("order", $("search-order").value);
  return params;
}

async function runSearch(offset, fromForm) {
  const limit = Number($("search-limit").value);
  const params = fromForm || state.search.params === null ? searchParams() : new URLSearchParams(state.search.params);
  state.search = { offset, limit, params: params.toString() };
  params.set("limit", String(limit));
  params.set("offset", String(offset));
  const line = $("search-status-line");
  setStatus(line, "Searching…", "busy");
  try {
    const page = await apiJson(`/api/studies?${params.toString()}`);
    renderResults(page);
  } catch (error) {
    setStatus(line, `Search failed: ${error.message}`, "error");
  }
}

function findingChips(item, filtered) {
  const td = element("td");
  const cell = element("div", { className: "chips" });
  td.append(cell);
  if (item.status !== "ok") {
    const prefix = item.status === "refused" ? "not read" : "could not be read";
    cell.append(element("span", { text: `${prefix}: ${item.failure_reason}`, className: "failed" }));
    return td;
  }
  const shown = filtered ? item.findings : item.findings.filter((finding) => finding.above_threshold);
  if (shown.length === 0) {
    cell.append(element("span", { text: "nothing above threshold", className: "muted" }));
    return td;
  }
  for (const finding of shown) {
    const chip = element("span", {
      text: `${finding.display_name} ${fmt(finding.probability)}`,
      className: finding.above_threshold ? "chip above" : "chip",
      title: finding.description || `threshold ${fmt(finding.threshold)}`,
    });
    cell.append(chip);
  }
  return td;
}

function renderResults(page) {
  const body = $("search-body");
  body.replaceChildren();
  const params = new URLSearchParams(state.search.params);
  const filtered = ["finding", "min_prob", "text", "above_threshold"].some((name) => params.has(name));
  for (const item of page.items) {
    const row = element("tr");
    row.dataset.id = String(item.id);
    const id = element("td", { text: item.id, className: "num" });
    const patient = element("td", { text: item.patient_id ?? "—" });
    if (item.synthetic) patient.append(element("span", { text: "SYNTHETIC", className: "badge badge-synthetic small-badge" }));
    const open = element("button", { text: "Open", className: "small" });
    open.type = "button";
    open.addEventListener("click", () => openStudy(item.id));
    const openCell = element("td");
    openCell.append(open);
    const described = item.findings.find((finding) => finding.above_threshold && finding.description);
    row.append(
      id,
      element("td", { text: item.study_date ?? "—" }),
      patient,
      element("td", { text: item.view_position ?? "—" }),
      element("td", { text: modelLabel(item.model), className: "muted" }),
      findingChips(item, filtered),
      element("td", { text: described ? described.description : "", className: "sentence-cell" }),
      element("td", { text: new Date(item.created_at).toLocaleDateString(), className: "muted" }),
      openCell,
    );
    body.append(row);
  }
  show($("search-results"), page.items.length > 0);
  const line = $("search-status-line");
  if (page.total === 0) setStatus(line, "No matching records.", "");
  else setStatus(line, `${page.total} matching record${page.total === 1 ? "" : "s"}.`, "ok");
  const first = page.items.length ? page.offset + 1 : 0;
  $("page-info").textContent = `${first}–${page.offset + page.items.length} of ${page.total}`;
  $("page-prev").disabled = !page.links.previous;
  $("page-next").disabled = !page.links.next;
  show($("pager"), page.total > 0);
}

// --- wiring ------------------------------------------------------------------------------------------------

function chooseFile(file) {
  $("file-name").textContent = file ? `${file.name} (${(file.size / 1024).toFixed(0)} KB)` : "No file chosen";
  $("analyse").disabled = !file;
}

function init() {
  $("tab-read").addEventListener("click", () => selectTab("read"));
  $("tab-search").addEventListener("click", () => selectTab("search"));
  $("change-key").addEventListener("click", () => showKeyPanel(""));
  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    state.key = $("api-key").value.trim();
    sessionStorage.setItem(KEY_STORAGE, state.key);
    $("api-key").value = "";
    await loadModel();
  });
  $("file-input").addEventListener("change", () => chooseFile($("file-input").files[0]));
  const zone = $("dropzone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    if (event.dataTransfer.files.length) {
      $("file-input").files = event.dataTransfer.files;
      chooseFile(event.dataTransfer.files[0]);
    }
  });
  $("upload-form").addEventListener("submit", uploadStudy);
  $("heatmap-toggle").addEventListener("change", updateLayerVisibility);
  $("heatmap-opacity").addEventListener("input", updateLayerVisibility);
  $("heatmap-layer").addEventListener("load", updateLayerVisibility);
  $("viewer-image").addEventListener("load", fitImage);
  window.addEventListener("resize", fitImage);
  $("open-overlay").addEventListener("click", downloadOverlay);
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    runSearch(0, true);
  });
  $("page-prev").addEventListener("click", () => runSearch(Math.max(0, state.search.offset - state.search.limit), false));
  $("page-next").addEventListener("click", () => runSearch(state.search.offset + state.search.limit, false));

  if (state.key) loadModel();
  else showKeyPanel("");
}

document.addEventListener("DOMContentLoaded", init);
