// clipserve playground: plain DOM, no dependencies. Talks to the public API with relative URLs
// (the page is served at <prefix>/ui/), so "../classify" is the service's /classify.
"use strict";

const API = { classify: "../classify", models: "../v1/models", setDefault: "../admin/default" };
const $ = (id) => document.getElementById(id);
const state = { files: [], models: null };

// -- helpers -------------------------------------------------------------------------------

function parseLabels(text) {
  const seen = new Set();
  const labels = [];
  for (const part of text.split(/[\n,]/)) {
    const label = part.trim();
    if (label && !seen.has(label)) {
      seen.add(label);
      labels.push(label);
    }
  }
  return labels;
}

function parseTemplates(text) {
  return text.split("\n").map((t) => t.trim()).filter((t) => t.length > 0);
}

// An API error as one readable sentence: the service answers {"error": {code, type, message}}.
async function readError(response) {
  let detail = response.statusText || "request failed";
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) {
      detail = `${body.error.message} (${body.error.type})`;
    } else if (body && body.detail) {
      detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    }
  } catch (_) {
    // not JSON (a proxy's error page): keep the status text
  }
  const retry = response.headers.get("retry-after");
  return `HTTP ${response.status}: ${detail}` + (retry ? ` Retry after ${retry} s.` : "");
}

function networkError(error) {
  return `Could not reach the service: ${error.message || error}`;
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

// -- images ---------------------------------------------------------------------------------

function setFiles(files) {
  state.files = Array.from(files).filter((f) => f.type === "" || f.type.startsWith("image/"));
  const thumbs = $("thumbs");
  for (const img of thumbs.querySelectorAll("img")) URL.revokeObjectURL(img.src);
  thumbs.replaceChildren();
  for (const file of state.files) {
    const item = el("li");
    item.append(el("img", { src: URL.createObjectURL(file), alt: file.name }), el("span", {}, file.name));
    thumbs.append(item);
  }
  const n = state.files.length;
  $("images-status").textContent = n ? `${n} image${n === 1 ? "" : "s"} chosen.` : "No images chosen.";
}

function wireImages() {
  $("images").addEventListener("change", (event) => setFiles(event.target.files));
  const zone = $("drop-zone");
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    setFiles(event.dataTransfer.files);
  });
}

// -- classes ----------------------------------------------------------------------------------

function updateLabelStatus() {
  const own = $("use-model-classes").checked;
  $("labels").disabled = own;
  const n = parseLabels($("labels").value).length;
  $("labels-status").textContent = own ? "The model's own classes are used." : `${n} label${n === 1 ? "" : "s"}.`;
}

function buildForm() {
  const form = new FormData();
  for (const file of state.files) form.append("images", file, file.name);
  if (!$("use-model-classes").checked) {
    for (const label of parseLabels($("labels").value)) form.append("labels", label);
  }
  for (const template of parseTemplates($("templates").value)) form.append("templates", template);
  if ($("model").value) form.append("model", $("model").value);
  form.append("top_k", $("top-k").value.trim() || "5");
  return form;
}

function checkInputs() {
  if (!state.files.length) return "Choose at least one image first.";
  if (!$("use-model-classes").checked && !parseLabels($("labels").value).length) {
    return "Type at least one label, or tick \"Use the model's own classes\".";
  }
  return "";
}

// -- results ----------------------------------------------------------------------------------

function renderResult(file, result) {
  const card = el("article", { class: "result" });
  const head = el("header");
  head.append(el("img", { src: URL.createObjectURL(file), alt: "" }), el("h3", {}, file.name));
  const bars = el("ol", { class: "bars", "aria-label": `Top scores for ${file.name}` });
  for (const p of result.predictions) {
    const row = el("li", { class: "bar" });
    const percent = (100 * p.score).toFixed(1);
    const track = el("span", { class: "track", "aria-hidden": "true" });
    const fill = el("span", { class: "fill" });
    fill.style.width = `${Math.max(0.5, 100 * p.score)}%`;
    track.append(fill);
    row.append(
      el("span", { class: "bar-label", title: p.label }, p.label),
      track,
      el("span", { class: "bar-score", title: `cosine ${p.cosine.toFixed(4)}` }, `${percent}%`),
    );
    bars.append(row);
  }
  card.append(head, bars);
  return card;
}

function renderResponse(files, body, elapsedMs, serverTiming) {
  const results = $("results");
  results.replaceChildren();
  body.results.forEach((result, i) => results.append(renderResult(files[i], result)));
  const m = body.model;
  const timing = [`round trip ${elapsedMs.toFixed(0)} ms (measured in the browser)`];
  if (serverTiming) timing.push(`server: ${serverTiming}`);
  const meta = $("result-meta");
  meta.replaceChildren(
    "Answered by ",
    el("strong", { id: "answered-by" }, `${m.name} v${m.version}`),
    ` (${m.method}) · ${timing.join(" · ")}`,
  );
}

async function classify(event) {
  event.preventDefault();
  showError("");
  const problem = checkInputs();
  if (problem) {
    showError(problem);
    return;
  }
  const button = $("submit");
  button.disabled = true;
  $("busy").textContent = "Classifying…";
  try {
    const files = state.files.slice();
    const started = performance.now();
    const response = await fetch(API.classify, { method: "POST", body: buildForm(), headers: keyHeaders() });
    const elapsed = performance.now() - started;
    if (!response.ok) {
      showError(await readError(response));
      return;
    }
    renderResponse(files, await response.json(), elapsed, response.headers.get("server-timing"));
  } catch (error) {
    showError(networkError(error));
  } finally {
    button.disabled = false;
    $("busy").textContent = "";
  }
}

// -- models and admin -------------------------------------------------------------------------

function fillSelect(select, names, keepFirst) {
  const previous = select.value;
  const fixed = keepFirst ? [select.options[0]] : [];
  select.replaceChildren(...fixed);
  for (const name of names) select.append(el("option", { value: name }, name));
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
}

function renderModels(listing) {
  state.models = listing;
  const body = $("models").tBodies[0];
  body.replaceChildren();
  for (const m of listing.data) {
    const aliases = Object.keys(listing.aliases).filter((a) => listing.aliases[a] === m.name);
    const row = el("tr", { "data-model": m.name });
    const name = el("th", { scope: "row" }, m.name);
    if (aliases.length) name.append(el("span", { class: "aliases" }, ` (alias: ${aliases.join(", ")})`));
    const classes = m.classes ? String(m.classes) : "none (labels only)";
    row.append(name, el("td", {}, m.version), el("td", {}, m.method), el("td", {}, classes));
    row.append(el("td", {}, m.lane || ""), el("td", { class: "is-default" }, isDefault(listing, m) ? "yes" : ""));
    body.append(row);
  }
  const names = listing.data.map((m) => m.name).concat(Object.keys(listing.aliases));
  fillSelect($("model"), names, true);
  $("model").options[0].textContent = `(server default: ${listing.default})`;
  fillSelect($("default-model"), names, false);
  const n = listing.data.length;
  $("models-status").textContent = `${n} model${n === 1 ? "" : "s"} loaded; default: ${listing.default}.`;
}

// With API keys on (docs/OPERATIONS.md), /classify and /v1/models need one; sent as a bearer token.
function keyHeaders() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function isDefault(listing, model) {
  return listing.default === model.name || listing.aliases[listing.default] === model.name;
}

async function loadModels() {
  $("models-status").textContent = "Loading…";
  try {
    const response = await fetch(API.models, { cache: "no-store", headers: keyHeaders() });
    if (!response.ok) {
      $("models-status").textContent = await readError(response);
      return;
    }
    renderModels(await response.json());
  } catch (error) {
    $("models-status").textContent = networkError(error);
  }
}

async function setDefault(event) {
  event.preventDefault();
  const status = $("admin-status");
  status.classList.remove("failed");
  const token = $("admin-token").value.trim();
  const model = $("default-model").value;
  if (!token || !model) {
    status.textContent = "Type the admin token and pick a model first.";
    status.classList.add("failed");
    return;
  }
  try {
    const response = await fetch(API.setDefault, {
      method: "PUT",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify({ model }),
    });
    if (!response.ok) {
      status.textContent = await readError(response);
      status.classList.add("failed");
      return;
    }
    status.textContent = `The default model is now ${(await response.json()).default}.`;
    await loadModels();
  } catch (error) {
    status.textContent = networkError(error);
    status.classList.add("failed");
  }
}

// -- start ------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  wireImages();
  $("labels").addEventListener("input", updateLabelStatus);
  $("use-model-classes").addEventListener("change", updateLabelStatus);
  $("classify-form").addEventListener("submit", classify);
  $("admin-form").addEventListener("submit", setDefault);
  $("refresh-models").addEventListener("click", loadModels);
  $("api-key").addEventListener("change", loadModels);
  updateLabelStatus();
  setFiles($("images").files);
  loadModels();
});
