// The structure page's 3D view: chemiscope's StructureVisualizer (from the installed chemiscope
// package, served at /static/chemiscope/) on the dataset of /structures/{id}/view.json. The
// bonds menu reloads the dataset with a stored quotient graph's edges as the bonds.
"use strict";

(function () {
  const root = document.getElementById("viewer");
  const menu = document.getElementById("bonds");
  const source = document.getElementById("bonds-source");
  const problems = document.getElementById("viewer-problems");
  let current = null;

  function say(messages) {
    problems.hidden = messages.length === 0;
    problems.textContent = messages.join(" ");
  }

  async function show(graph) {
    root.dataset.loaded = "";
    const url = root.dataset.src + (graph ? "?graph=" + encodeURIComponent(graph) : "");
    const response = await fetch(url);
    const body = await response.json();
    if (!response.ok) {
      say(body.problems || ["the 3D view could not load (HTTP " + response.status + ")"]);
      root.dataset.loaded = "error";
      return;
    }
    if (current !== null) {
      current.remove();
      current = null;
    }
    const warnings = new Chemiscope.Warnings();
    warnings.addHandler((message) => say([String(message)]));
    const config = {
      meta: document.getElementById("viewer-meta"),
      structure: document.getElementById("viewer-structure"),
      info: document.getElementById("viewer-info"),
    };
    current = await Chemiscope.StructureVisualizer.load(config, body.dataset, warnings);
    source.textContent = "bonds shown: " + body.bonds + ".";
    say(body.problems);
    root.dataset.loaded = graph || "guess";
  }

  function failed(error) {
    say(["the 3D view could not load: " + error]);
    root.dataset.loaded = "error";
  }

  menu.addEventListener("change", () => show(menu.value).catch(failed));
  show(menu.value).catch(failed);
})();
