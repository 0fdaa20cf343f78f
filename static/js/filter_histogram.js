// The active filter's score histogram drawn with uPlot (static/vendor) as bars, with the
// keep-rate threshold as a vertical line. The numbers come from the page's JSON data block
// (#filter-histogram-data: bin starts, counts, threshold); the table beside the chart holds
// the same numbers for readers without JavaScript.
(function () {
  "use strict";

  const HEIGHT = 220;

  function draw(root) {
    const source = document.getElementById("filter-histogram-data");
    if (!source || !window.uPlot) return;
    const data = JSON.parse(source.textContent);
    if (!data.counts.length) return;
    const width = 1 / data.counts.length;
    const centres = data.lows.map((low) => low + width / 2);
    const threshold = data.threshold;
    const area = document.createElement("div");
    root.append(area);
    const options = {
      width: Math.max(320, root.clientWidth || 640),
      height: HEIGHT,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: false, range: [0, 1] }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      axes: [{ label: "score" }, { label: "images" }],
      series: [
        {},
        {
          label: "images",
          stroke: "#2456d6",
          fill: "rgba(36, 86, 214, 0.35)",
          paths: window.uPlot.paths.bars({ size: [0.9, 100] }),
          points: { show: false },
        },
      ],
      hooks: {
        draw: [
          (u) => {
            if (threshold == null) return;
            const x = Math.round(u.valToPos(threshold, "x", true));
            const ctx = u.ctx;
            ctx.save();
            ctx.strokeStyle = "#d6452a";
            ctx.lineWidth = 2;
            ctx.setLineDash([6, 4]);
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
            ctx.restore();
          },
        ],
      },
    };
    const plot = new window.uPlot(options, [centres, data.counts], area);
    root.uplot = plot; // for browser tests, which read what the chart holds
    root.dataset.bins = String(data.counts.length);
    window.addEventListener("resize", () => {
      plot.setSize({ width: Math.max(320, root.clientWidth || 640), height: HEIGHT });
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const root = document.querySelector("[data-filter-histogram]");
    if (root) draw(root);
  });
})();
