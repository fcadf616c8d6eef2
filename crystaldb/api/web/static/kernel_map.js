// The kernel map page: fetch the map's chemiscope dataset, load chemiscope's default visualizer
// on it (map, structure panel, info, metadata), and keep the "selected" line beside it on the
// structure chemiscope selected, with a link to that structure's page.
"use strict";

(function () {
  const root = document.getElementById("kernel-map");
  const selected = document.getElementById("map-selected");
  if (!root || !selected) {
    return;
  }
  const ID = "structure id";
  const FORMULA = "formula";

  // The server sends null for unknown values (JSON has no NaN); chemiscope wants NaN.
  function withNaN(dataset) {
    for (const property of Object.values(dataset.properties)) {
      property.values = property.values.map((v) => (v === null ? NaN : v));
    }
    return dataset;
  }

  async function fetchJSON(url) {
    const response = await fetch(url);
    if (!response.ok) {
      throw new Error(`${url}: ${response.status} ${response.statusText}`);
    }
    return response.json();
  }

  // "Structure 12 (C6H6): open its page" for chemiscope's selected structure.
  function show(dataset, indexes) {
    const sid = dataset.properties[ID].values[indexes.structure];
    const link = document.createElement("a");
    link.href = `/structures/${sid}`;
    link.id = "map-selected-link";
    link.textContent = `open structure ${sid}`;
    selected.replaceChildren(
      `Selected: structure ${sid} (${dataset.properties[FORMULA].values[indexes.structure]}): `,
      link
    );
    selected.dataset.structure = String(sid);
  }

  // Run `then` after chemiscope's own callback `name` of `owner`, with the same indexes.
  function follow(owner, name, then) {
    const own = owner[name];
    owner[name] = function (indexes, ...rest) {
      own.call(owner, indexes, ...rest);
      then(indexes);
    };
  }

  async function load() {
    const dataset = withNaN(await fetchJSON(root.dataset.dataset));
    const config = {
      map: "chemiscope-map",
      info: "chemiscope-info",
      meta: "chemiscope-meta",
      structure: "chemiscope-structure",
      // the dataset holds placeholders {size, data: structure id}: fetch a cell when shown
      loadStructure: (_index, structure) =>
        fetchJSON(`${root.dataset.structures}${structure.data}.json`),
    };
    const points = dataset.structures.length;
    const visualizer = await Chemiscope.DefaultVisualizer.load(config, dataset);
    const update = (indexes) => show(dataset, indexes);
    follow(visualizer.map, "onselect", update); // a click on a point
    follow(visualizer.structure, "onselect", update); // an atom clicked in the structure panel
    follow(visualizer.info, "onchange", update); // the info panel's slider
    update({ structure: 0 }); // chemiscope shows the first structure at start
    window.crystaldbMap = { visualizer: visualizer, dataset: dataset, points: points };
    root.dataset.points = String(points);
  }

  load().catch((error) => {
    selected.textContent = `The map could not be loaded: ${error}`;
    console.error(error);
  });
})();
