// Live training curves drawn with uPlot (static/vendor): one panel per chosen metric, one
// line per run. A page names its runs as links to their metrics JSON (a[data-run] inside
// [data-curves]); new points are fetched with ?after=<last step> every few seconds, and the
// polling stops once every run has finished. The counts drawn are kept in data-points
// attributes (the section's and each panel's), which the browser tests read.
(function () {
  "use strict";

  const COLORS = ["#2456d6", "#d6452a", "#17803d", "#8a4fd6", "#b07800", "#0b8a8a"];
  const POLL_MS = 3000;
  const MAX_WAIT_MS = 30000;
  // Chunks fetched for one run in one tick (the server sends at most 5,000 steps a chunk).
  const MAX_CHUNKS = 40;
  const HEIGHT = 240;
  const SMOOTHING = [
    ["0", "none"],
    ["0.6", "0.6"],
    ["0.9", "0.9"],
    ["0.99", "0.99"],
  ];

  function fmt(value) {
    if (value == null || Number.isNaN(value)) return "–";
    const size = Math.abs(value);
    if (size !== 0 && (size < 1e-3 || size >= 1e5)) return value.toExponential(2);
    return String(Number(value.toPrecision(4)));
  }

  // TensorBoard's smoothing: an exponential moving average, debiased so the start is not
  // pulled towards zero; gaps stay gaps.
  function smooth(values, weight) {
    if (!weight) return values;
    let last = 0;
    let seen = 0;
    return values.map((value) => {
      if (value == null) return null;
      last = last * weight + (1 - weight) * value;
      seen += 1;
      return last / (1 - Math.pow(weight, seen));
    });
  }

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  class Run {
    constructor(link, index) {
      this.url = link.href;
      this.label = link.dataset.label || `run ${index + 1}`;
      this.color = COLORS[index % COLORS.length];
      this.steps = [];
      this.series = {};
      this.lastStep = null;
      this.status = "";
      this.done = false;
    }

    append(answer) {
      const before = this.steps.length;
      const added = answer.steps.length;
      for (const name of Object.keys(answer.series)) {
        if (!(name in this.series)) this.series[name] = new Array(before).fill(null);
      }
      for (const [name, values] of Object.entries(this.series)) {
        const fresh = answer.series[name];
        for (let i = 0; i < added; i++) values.push(fresh ? fresh[i] : null);
      }
      for (const step of answer.steps) this.steps.push(step);
      if (answer.last_step != null) this.lastStep = answer.last_step;
      this.status = answer.status;
      return added;
    }

    async fetchNew() {
      let added = 0;
      for (let chunk = 0; chunk < MAX_CHUNKS; chunk++) {
        const url = new URL(this.url, window.location.href);
        if (this.lastStep != null) url.searchParams.set("after", String(this.lastStep));
        const response = await fetch(url, {
          headers: { Accept: "application/json" },
          credentials: "same-origin",
          cache: "no-store",
        });
        const type = response.headers.get("Content-Type") || "";
        if (!type.includes("application/json")) {
          // A login page instead of numbers: the session has ended.
          throw new HttpError(401, "you have been signed out; reload the page");
        }
        const answer = await response.json();
        if (!response.ok) throw new HttpError(response.status, answer.error || response.statusText);
        added += this.append(answer);
        if (!answer.more) {
          this.done = Boolean(answer.finished);
          break;
        }
      }
      return added;
    }
  }

  class Curves {
    constructor(root) {
      this.root = root;
      this.runs = Array.from(root.querySelectorAll("a[data-run]"), (link, i) => new Run(link, i));
      this.chosen = new Set((root.dataset.default || "loss").split(/\s+/).filter(Boolean));
      this.known = [];
      this.smoothing = 0;
      this.plots = new Map();
      this.failures = 0;
      this.syncKey = `curves-${Math.random().toString(36).slice(2)}`;
      this.status = root.querySelector("[data-curves-status]");
      this.status.textContent = "Loading the curves…";
      this.picker = this.buildPicker();
      this.panels = document.createElement("div");
      this.panels.className = "curve-panels";
      root.append(this.picker, this.panels);
      root.dataset.points = "0";
      root.dataset.state = "loading";
      window.addEventListener("resize", () => this.resize());
      this.tick();
    }

    buildPicker() {
      const picker = document.createElement("fieldset");
      picker.className = "series-picker";
      picker.hidden = true; // until the first metric arrives
      const legend = document.createElement("legend");
      legend.textContent = "Show";
      picker.append(legend);
      this.boxes = document.createElement("span");
      this.boxes.className = "series-picker";
      picker.append(this.boxes);
      const label = document.createElement("label");
      label.append("Smoothing ");
      const select = document.createElement("select");
      select.name = "smoothing";
      for (const [value, text] of SMOOTHING) select.append(new Option(text, value));
      select.addEventListener("change", () => {
        this.smoothing = Number(select.value);
        this.rebuild();
      });
      label.append(select);
      picker.append(label);
      return picker;
    }

    learn() {
      // Metric names in the server's order (loss and lr first), across runs.
      let changed = false;
      for (const run of this.runs) {
        for (const name of Object.keys(run.series)) {
          if (this.known.includes(name)) continue;
          this.known.push(name);
          changed = true;
          const label = document.createElement("label");
          const box = document.createElement("input");
          box.type = "checkbox";
          box.value = name;
          box.checked = this.chosen.has(name);
          box.addEventListener("change", () => {
            if (box.checked) this.chosen.add(name);
            else this.chosen.delete(name);
            this.rebuild();
          });
          label.append(box, ` ${name}`);
          this.boxes.append(label);
        }
      }
      if (changed) this.picker.hidden = false;
      return changed;
    }

    table(name) {
      const columns = [];
      for (const run of this.runs) {
        const values = run.series[name] || new Array(run.steps.length).fill(null);
        columns.push({ run, raw: values, smoothed: smooth(values, this.smoothing) });
      }
      let xs;
      if (this.runs.length === 1) {
        xs = this.runs[0].steps.slice();
      } else {
        xs = Array.from(new Set(this.runs.flatMap((run) => run.steps))).sort((a, b) => a - b);
      }
      const where = new Map(xs.map((x, i) => [x, i]));
      const aligned = (run, values) => {
        if (this.runs.length === 1) return values.slice();
        const out = new Array(xs.length).fill(null);
        run.steps.forEach((step, i) => (out[where.get(step)] = values[i]));
        return out;
      };
      const data = [xs];
      for (const { run, raw, smoothed } of columns) {
        if (this.smoothing) data.push(aligned(run, raw));
        data.push(aligned(run, smoothed));
      }
      return data;
    }

    options(name, width) {
      const series = [{ label: "step", value: (u, v) => (v == null ? "–" : String(v)) }];
      for (const run of this.runs) {
        const label = this.runs.length > 1 ? run.label : name;
        if (this.smoothing) {
          series.push({
            label: `${label} (raw)`,
            stroke: `${run.color}40`,
            width: 1,
            spanGaps: true,
            value: (u, v) => fmt(v),
          });
        }
        series.push({
          label,
          stroke: run.color,
          width: 1.5,
          spanGaps: true,
          value: (u, v) => fmt(v),
        });
      }
      const grid = { stroke: "#eef1f5", width: 1 };
      return {
        width,
        height: HEIGHT,
        scales: { x: { time: false } },
        series,
        axes: [
          { label: "step", stroke: "#5b6575", grid },
          { size: 64, stroke: "#5b6575", grid, values: (u, ticks) => ticks.map(fmt) },
        ],
        cursor: { sync: { key: this.syncKey } },
        legend: { live: true },
      };
    }

    width(panel) {
      return Math.max(240, (panel.clientWidth || this.panels.clientWidth || 480) - 16);
    }

    rebuild() {
      for (const { plot } of this.plots.values()) plot.destroy();
      this.plots.clear();
      this.panels.replaceChildren();
      this.draw();
    }

    draw() {
      for (const name of this.known) {
        if (!this.chosen.has(name)) continue;
        const data = this.table(name);
        const known = this.plots.get(name);
        if (known) {
          known.plot.setData(data);
          known.panel.dataset.points = String(data[0].length);
          continue;
        }
        const panel = document.createElement("div");
        panel.className = "curve-panel";
        panel.dataset.metric = name;
        const title = document.createElement("h3");
        title.textContent = name;
        const area = document.createElement("div");
        panel.append(title, area);
        this.panels.append(panel);
        const plot = new window.uPlot(this.options(name, this.width(panel)), data, area);
        panel.dataset.points = String(data[0].length);
        panel.uplot = plot; // for the browser tests, which read what the chart holds
        this.plots.set(name, { plot, panel });
      }
      // Panels follow the order of the picker, whatever order they were chosen in.
      for (const name of this.known) {
        const entry = this.plots.get(name);
        if (entry) this.panels.append(entry.panel);
      }
    }

    resize() {
      for (const { plot, panel } of this.plots.values()) {
        plot.setSize({ width: this.width(panel), height: HEIGHT });
      }
    }

    report() {
      const points = this.runs.reduce((sum, run) => sum + run.steps.length, 0);
      this.root.dataset.points = String(points);
      const live = this.runs.some((run) => !run.done);
      this.root.dataset.state = live ? "live" : "done";
      const last = this.runs.map((run) => run.lastStep).filter((step) => step != null);
      if (!points) {
        this.status.textContent = live
          ? "No metrics logged yet; the curves appear with the first logged step."
          : "No metrics were logged.";
        return;
      }
      const steps = `${points} point${points === 1 ? "" : "s"}, up to step ${Math.max(...last)}`;
      this.status.textContent = live
        ? `${steps}; updated ${new Date().toLocaleTimeString()}.`
        : `${steps}; finished.`;
    }

    async tick() {
      if (document.hidden && this.root.dataset.state !== "loading") {
        window.setTimeout(() => this.tick(), POLL_MS);
        return;
      }
      let added = 0;
      try {
        const counts = await Promise.all(
          this.runs.filter((run) => !run.done).map((run) => run.fetchNew()),
        );
        added = counts.reduce((sum, n) => sum + n, 0);
        this.failures = 0;
      } catch (error) {
        this.failures += 1;
        const status = error instanceof HttpError ? error.status : 0;
        this.status.textContent = `The curves could not be updated: ${error.message}.`;
        this.root.dataset.state = "error";
        // A page that will not be there on retry (gone, forbidden, signed out): stop asking.
        if (status >= 400 && status < 500 && status !== 429) return;
        window.setTimeout(
          () => this.tick(),
          Math.min(MAX_WAIT_MS, POLL_MS * Math.pow(2, this.failures)),
        );
        return;
      }
      const learnt = this.learn();
      if (learnt || added) this.draw();
      this.report();
      if (this.runs.some((run) => !run.done)) window.setTimeout(() => this.tick(), POLL_MS);
    }
  }

  function start() {
    if (!window.uPlot) return;
    document.querySelectorAll("[data-curves]").forEach((root) => {
      if (root.querySelector("a[data-run]")) new Curves(root);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
