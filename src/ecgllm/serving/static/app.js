// The page: upload a recording (or fetch a bundled example and upload that), then show the diagnosis.
"use strict";

const $ = (id) => document.getElementById(id);
const FIGURES = [
  ["heart_rate_bpm", "heart rate (bpm)"], ["n_beats", "beats"], ["rr_cv", "RR coefficient of variation"],
  ["rmssd_ms", "RMSSD (ms)"], ["prr31", "pRR31"], ["sd1_ms", "Poincaré SD1 (ms)"], ["sd2_ms", "Poincaré SD2 (ms)"],
];
let current = null;
const examples = {};

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function showAnswer() {
  if (!current) return;
  const lang = document.querySelector('input[name="lang"]:checked').value;
  const own = lang === current.lang;
  $("answer").textContent = own ? current.answer : current.translations[lang];
  $("answer").lang = lang;
  const ungrounded = own && !(current.numbers_grounded && current.regularity_grounded);
  $("answer-note").textContent = ungrounded ?
    "Written by the model, whose figures or words for the RR intervals here are not the measured ones: the " +
    "measured RR intervals are " + current.measured_regularity + "; read the figures in the table below." :
    own ? "Written by the model." :
    "Template translation of the model's decision and the measured figures (the model answers in " +
    (current.lang === "zh" ? "Chinese" : "English") + ").";
}

function show(result) {
  current = result;
  $("decision").textContent = result.outcome_title;
  $("decision").className = {N: "normal", A: "af", O: "other", "~": "noisy"}[result.outcome];
  $("advice").textContent = result.advice;
  $("p-af").textContent = result.p_af.toFixed(3);
  const signed = (v) => (v >= 0 ? "+" : "") + v.toFixed(2);
  const validated = result.calibrated ? "chosen on validation" : "not validated";
  if (result.threshold === null) {  // a four-class model: the likeliest class after its validated offsets
    $("rule").textContent = "P of each class " + Object.entries(result.class_probabilities)
      .map(([label, p]) => `${label} ${p.toFixed(3)}`).join(", ") + ` (offsets ${validated})`;
  } else {
    // What the decision compares: P(AF) reads 1.000 for any confident model, the log-odds stay apart.
    $("rule").textContent = `threshold ${result.threshold.toFixed(3)} (${validated}) · log-odds ` +
      `${signed(result.log_odds)} against ${signed(result.threshold_log_odds)}`;
  }
  $("seconds").textContent = result.seconds;
  $("fs-input").textContent = result.fs_input;
  const body = $("rhythm").querySelector("tbody");
  body.replaceChildren(...FIGURES.filter(([key]) => key in result.rhythm).map(([key, label]) => {
    const row = document.createElement("tr");
    row.dataset.figure = key;
    row.append(Object.assign(document.createElement("th"), {textContent: label}),
               Object.assign(document.createElement("td"), {textContent: result.rhythm[key]}));
    return row;
  }));
  $("strip").src = "data:image/png;base64," + result.pictures.strip_png;
  $("rr").src = "data:image/png;base64," + result.pictures.rr_png;
  showAnswer();
  $("result").hidden = false;
}

async function diagnose(files) {
  const form = new FormData();
  for (const file of files) form.append("file", file, file.name);
  if ($("fs").value) form.append("fs", $("fs").value);
  if ($("lead").value) form.append("lead", $("lead").value);
  status("Diagnosing " + Array.from(files, (f) => f.name).join(" + ") + " …");
  $("result").hidden = true;
  try {
    const response = await fetch("/v1/diagnose?pictures=true", {method: "POST", body: form});
    const body = await response.json();
    if (!response.ok) {
      status("Error " + response.status + ": " + (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)), true);
      return;
    }
    show(body);
    status("Done: " + body.record);
  } catch (error) {
    status("Request failed: " + error, true);
  }
}

async function diagnoseExample(example) {
  const files = [];
  for (const url of example.files) {
    const response = await fetch(url);
    if (!response.ok) { status("Could not fetch " + url, true); return; }
    files.push(new File([await response.blob()], url.split("/").pop()));
  }
  await diagnose(files);
}

async function loadExamples() {
  const response = await fetch("/v1/examples");
  for (const example of await response.json()) {
    examples[example.name] = example;
    const label = example.label === "A" ? "atrial fibrillation" : "normal";
    $("example").append(new Option(example.name + " (" + label + ")", example.name));
  }
}

$("upload").addEventListener("submit", (event) => {
  event.preventDefault();
  if ($("file").files.length) diagnose($("file").files);
  else if ($("example").value) diagnoseExample(examples[$("example").value]);
  else status("Choose a file or an example first.", true);
});
$("example").addEventListener("change", () => {
  if ($("example").value) diagnoseExample(examples[$("example").value]);
});
for (const radio of document.querySelectorAll('input[name="lang"]')) radio.addEventListener("change", showAnswer);
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files.length) diagnose(event.dataTransfer.files);
});
async function useModelLanguage() {
  const health = await (await fetch("/healthz")).json();
  const radio = document.querySelector('input[name="lang"][value="' + health.lang + '"]');
  if (radio) radio.checked = true;
}

loadExamples();
useModelLanguage();
