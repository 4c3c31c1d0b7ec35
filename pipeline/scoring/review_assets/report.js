// report.html: metrics, ROC / PR curves, per-class AUC and the test videos' curves, worst first.
(function () {
  const D = pageData(), R = D.report;
  const $ = id => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  window.review = {data: D, expandScores};

  $("meta").textContent = [`checkpoint ${R.checkpoint || "?"} (epoch ${R.checkpoint_epoch}, ${R.selected_by || "?"})`,
    `${R.n_videos} test videos (${R.n_abnormal_videos} anomalous), ${R.n_frames} frames`, `generated ${D.generated}`].join(" \u00b7 ");
  $("thr").textContent = R.far_threshold;

  // ------------------------------------------------------------------ metrics
  const head = R.headline || "auc";
  const metric = (label, value, cls) => $("metrics").append(el("span", {}, label), el("span", {class: "v " + (cls || "")}, value));
  metric("frame AUC", pct(R.auc), head === "auc" ? "head" : "");
  metric("frame AP", pct(R.ap), head === "ap" ? "head" : "");
  metric("AUC, anomalous videos only", pct(R.auc_abnormal));
  // two rates: the field's FAR counts normal videos only; the rows count every video's normal frames
  metric(`false-alarm rate @ ${R.far_threshold}, normal videos`, pct(R.far));
  metric(`false-alarm frames @ ${R.far_threshold}, all videos`,
         `${D.false_alarm_frames} (${pct(D.far_all)} of normal frames)`);
  metric("anomalous frames", `${R.n_anomalous_frames} of ${R.n_frames}`);

  // ------------------------------------------------------------------ ROC / PR (SVG)
  function svgEl(tag, attrs) { const e = document.createElementNS(SVG, tag); for (const k in attrs) e.setAttribute(k, attrs[k]); return e; }
  function plotCurve(svg, curve, xlabel, ylabel, baseline) {
    const P = {l: 34, r: 8, t: 8, b: 30}, W = 300 - P.l - P.r, H = 300 - P.t - P.b;
    const X = x => P.l + x * W, Y = y => P.t + (1 - y) * H;
    svg.append(svgEl("rect", {x: P.l, y: P.t, width: W, height: H, fill: "#fff", stroke: "#bbb"}));
    for (const g of [0.25, 0.5, 0.75]) {
      svg.append(svgEl("line", {x1: X(g), x2: X(g), y1: Y(0), y2: Y(1), stroke: "#eee"}));
      svg.append(svgEl("line", {x1: X(0), x2: X(1), y1: Y(g), y2: Y(g), stroke: "#eee"}));
    }
    for (const g of [0, 0.5, 1]) {
      const tx = svgEl("text", {x: X(g), y: Y(0) + 13, "text-anchor": "middle", "font-size": 10, fill: "#444"}); tx.textContent = g; svg.append(tx);
      const ty = svgEl("text", {x: X(0) - 4, y: Y(g) + 3, "text-anchor": "end", "font-size": 10, fill: "#444"}); ty.textContent = g; svg.append(ty);
    }
    const lx = svgEl("text", {x: X(0.5), y: 296, "text-anchor": "middle", "font-size": 11, fill: "#333"}); lx.textContent = xlabel; svg.append(lx);
    const ly = svgEl("text", {x: 10, y: Y(0.5), "text-anchor": "middle", "font-size": 11, fill: "#333", transform: `rotate(-90 10 ${Y(0.5)})`});
    ly.textContent = ylabel; svg.append(ly);
    if (baseline) svg.append(svgEl("polyline", {points: baseline.map(([x, y]) => `${X(x)},${Y(y)}`).join(" "), fill: "none", stroke: "#999", "stroke-dasharray": "4 3"}));
    if (!curve) {
      const t = svgEl("text", {x: X(0.5), y: Y(0.5), "text-anchor": "middle", "font-size": 12, fill: "#a00"});
      t.textContent = "needs normal and anomalous frames"; svg.append(t); return;
    }
    const pts = curve.x.map((x, i) => `${X(x).toFixed(1)},${Y(curve.y[i]).toFixed(1)}`).join(" ");
    svg.append(svgEl("polyline", {class: "curve", points: pts, fill: "none", stroke: COLOURS.curve, "stroke-width": 2}));
  }
  plotCurve($("roc"), D.roc, "false positive rate", "true positive rate", [[0, 0], [1, 1]]);
  plotCurve($("pr"), D.pr, "recall", "precision", [[0, D.positive_rate], [1, D.positive_rate]]);

  const classes = Object.entries(R.per_class || {});
  if (!classes.length) $("classes").append(el("p", {class: "hint"}, "no class labels in the annotation"));
  for (const [c, a] of classes.sort((x, y) => (x[1] ?? -1) - (y[1] ?? -1))) {
    $("per-class").tBodies[0].append(el("tr", {}, el("td", {}, c), el("td", {class: "num"}, pct(a)),
      el("td", {}, el("span", {class: "bar", style: `width:${Math.round(120 * (a || 0))}px`}))));
  }

  // ------------------------------------------------------------------ the videos
  const PAD = {l: 30, r: 8, t: 6, b: 18};
  const cache = new Map();
  const scoresOf = v => { if (!cache.has(v.name)) cache.set(v.name, expandScores(v.scores)); return cache.get(v.name); };
  /** Frames in error at the FAR threshold, as runs: [[missed runs], [false-alarm runs]]. */
  function errorRuns(v) {
    const s = scoresOf(v), lab = new Uint8Array(s.length);
    for (const [a, b] of v.gt) lab.fill(1, a, b + 1);
    const missed = [], fa = [];
    let start = -1, kind = 0;
    for (let f = 0; f <= s.length; f++) {
      const k = f === s.length ? 0 : (lab[f] && s[f] < R.far_threshold ? 1 : (!lab[f] && s[f] >= R.far_threshold ? 2 : 0));
      if (k !== kind) { if (kind) (kind === 1 ? missed : fa).push([start, f - 1]); start = f; kind = k; }
    }
    return [missed, fa];
  }
  function drawErrors(canvas, L, v) {
    const ctx = canvas.getContext("2d"), [missed, fa] = errorRuns(v);
    for (const [runs, colour] of [[missed, COLOURS.missed], [fa, COLOURS.falseAlarm]]) {
      ctx.fillStyle = colour;
      for (const [a, b] of runs) { const x = L.X(a); ctx.fillRect(x, L.pad.t + L.ph - 4, Math.max(1, L.X(b + 1) - x), 4); }
    }
  }

  const body = $("videos").tBodies[0];
  const open = new Set();
  let order = D.videos.map((v, i) => i), sortKey = "rank", filter = "all";
  D.videos.forEach((v, i) => { v.rank = i + 1; });

  function detailRow(v) {
    const canvas = el("canvas");
    const box = el("div", {class: "curvebox"}, canvas);
    const tr = el("tr", {class: "detail"}, el("td", {colspan: 8}, box,
      el("span", {class: "hint"}, `${v.name}: ${v.frames} frames (16 per clip), ${v.anomalous} anomalous; `
        + `${v.missed} missed, ${v.false_alarms} false alarms at ${R.far_threshold}`)));
    requestAnimationFrame(() => {
      const L = drawCurve(canvas, {scores: scoresOf(v), gt: v.gt, threshold: R.far_threshold, pad: PAD, axis: true, fps: 0});
      drawErrors(canvas, L, v);
      canvas.dataset.drawn = "1";
    });
    return tr;
  }
  function render() {
    const rows = [];
    for (const i of order) {
      const v = D.videos[i];
      if (filter === "abnormal" && !v.label) continue;
      if (filter === "normal" && v.label) continue;
      const spark = el("canvas", {class: "spark"});
      const tr = el("tr", {class: "video" + (open.has(i) ? " sel" : ""), dataset: {name: v.name},
                           onclick: () => toggle(i, tr)},
        el("td", {class: "num"}, v.rank), el("td", {}, v.name), el("td", {}, v.cls || (v.label ? "anomalous" : "normal")),
        el("td", {class: "num"}, v.frames), el("td", {class: "num"}, v.missed), el("td", {class: "num"}, v.false_alarms),
        el("td", {class: "num"}, v.max_score.toFixed(3)), el("td", {}, spark));
      tr._spark = spark; tr._v = v;
      rows.push(tr);
      if (open.has(i)) rows.push(detailRow(v));
    }
    body.replaceChildren(...rows);
    drawSparks();
  }
  function toggle(i, tr) {                               // open / close one video's curve in place
    if (open.has(i)) { open.delete(i); tr.nextElementSibling.remove(); }
    else { open.add(i); tr.after(detailRow(D.videos[i])); }
    tr.classList.toggle("sel", open.has(i));
  }
  // Sparklines are drawn a batch per animation frame: 290 rows or 800, the page opens at once.
  let sparkJob = 0;
  function paintSpark(tr) {
    const L = drawCurve(tr._spark, {scores: scoresOf(tr._v), gt: tr._v.gt, threshold: R.far_threshold, lineWidth: 1});
    drawErrors(tr._spark, L, tr._v);
  }
  function drawSparks() {
    const todo = [...body.querySelectorAll("tr.video")], job = ++sparkJob;
    body.dataset.sparks = "";
    (function batch() {
      if (job !== sparkJob) return;                       // a newer render took over
      for (const tr of todo.splice(0, 40)) paintSpark(tr);
      if (todo.length) requestAnimationFrame(batch); else body.dataset.sparks = "done";
    })();
  }

  for (const th of $("videos").tHead.querySelectorAll("th[data-key]")) {
    th.addEventListener("click", () => {
      const k = th.dataset.key;
      sortKey = k;
      const dir = (k === "name" || k === "cls" || k === "rank") ? 1 : -1;
      order.sort((a, b) => {
        const x = D.videos[a][k], y = D.videos[b][k];
        return (x < y ? -dir : x > y ? dir : 0) || D.videos[a].rank - D.videos[b].rank;
      });
      $("videos").tHead.querySelectorAll("th").forEach(h => h.classList.toggle("sorted", h === th));
      render();
    });
  }
  $("filter").addEventListener("change", e => { filter = e.target.value; render(); });
  render();
  document.body.dataset.ready = "1";
  document.body.dataset.readyMs = performance.now().toFixed(0);
})();
