// review.html: the videos of a pipeline.detect folder, their score curves and intervals.
(function () {
  const D = pageData();
  const $ = id => document.getElementById(id);
  const ZOOM_S = 60;                       // seconds shown in the zoomed curve of long videos
  const state = {
    cur: null,                             // index into D.videos
    threshold: D.threshold != null ? D.threshold : 0.5,
    minDuration: D.min_duration_s != null ? D.min_duration_s : 1.0,
    mergeGap: D.merge_gap_s != null ? D.merge_gap_s : 0.5,
    intervals: [], pos: 0, player: null, layout: null, zoomLayout: null,
  };
  window.review = {data: D, state, findIntervals, expandScores, select};

  const clocks = new Map();                // video -> its clock (frame <-> time, pipeline/timeline.py)
  function clockOf(v) {
    if (!clocks.has(v)) clocks.set(v, videoClock(v));
    return clocks.get(v);
  }
  const cache = new Map();                 // video index -> Float64Array of frame scores
  function scoresOf(i) {
    if (!cache.has(i)) cache.set(i, expandScores(D.videos[i].scores));
    return cache.get(i);
  }
  function intervalsOf(i) {
    const v = D.videos[i];
    return findIntervals(scoresOf(i), v.fps, state.threshold, state.minDuration, state.mergeGap, v.times);
  }

  // ------------------------------------------------------------------ header and index
  const meta = [`checkpoint ${D.checkpoint || "?"}`, `generated ${D.generated}`, `${D.videos.length} video(s), sorted by peak score`];
  $("meta").textContent = meta.join(" \u00b7 ");
  if (D.random_weights) $("meta").append(" \u00b7 ", el("span", {class: "warn"}, "features from an I3D with RANDOM weights (demo / tests only)"));
  if (D.problems && D.problems.length) $("problems").textContent = `not shown: ${D.problems.join("; ")}`;

  const rows = [];
  D.videos.forEach((v, i) => {
    const spark = el("canvas", {class: "spark"});
    const tr = el("tr", {onclick: () => { location.hash = "video=" + encodeURIComponent(v.name); }},
      el("td", {class: "num"}, i + 1), el("td", {class: "name", title: v.file ? `${v.name} (${v.file})` : v.name}, v.name),
      el("td", {class: "num"}, v.max_score.toFixed(3), spark), el("td", {class: "num"}, v.intervals.length),
      el("td", {class: "num"}, fmtTime(v.duration_s)));
    rows.push(tr);
    $("videos").tBodies[0].append(tr);
    tr._spark = spark;
  });
  function drawSparks() {
    rows.forEach((tr, i) => drawCurve(tr._spark, {scores: scoresOf(i), threshold: state.threshold, lineWidth: 1}));
  }
  function updateCounts() {
    rows.forEach((tr, i) => { tr.cells[3].textContent = i === state.cur ? state.intervals.length : intervalsOf(i).length; });
  }

  // ------------------------------------------------------------------ players
  // A player: time() in seconds, seek(t), playing(); the page redraws the playhead on ticks.
  function videoPlayer(v) {
    const video = el("video", {controls: "", preload: "metadata", src: v.src});
    const note = el("p", {class: "note"});
    video.addEventListener("error", () => {
      note.textContent = `The browser cannot load ${v.file} (${decodeURIComponent(v.src)}): moved, or a codec it does not play.`;
    });
    for (const ev of ["timeupdate", "seeked", "seeking", "loadedmetadata"]) video.addEventListener(ev, tick);
    video.addEventListener("play", () => requestAnimationFrame(loop));
    function loop() { tick(); if (!video.paused && !video.ended) requestAnimationFrame(loop); }
    $("media").replaceChildren(video, note);
    return {video, time: () => video.currentTime, seek: t => { video.currentTime = t; tick(); },
            toggle: () => (video.paused ? video.play() : video.pause())};
  }
  function thumbPlayer(v) {
    const why = v.missing ? `${v.file} is not where detect read it` : `a browser cannot play ${v.file}`;
    const note = el("p", {class: "note"}, v.thumbs.length ? `${why}: thumbnails instead (click one, or the curve).` : `${why}; no thumbnails.`);
    const big = el("img", {alt: ""});
    const strip = el("div", {class: "strip"});
    const imgs = v.thumbs.map(th => {
      const im = el("img", {src: th.src, title: fmtTime(th.t, true), onclick: () => p.seek(th.t)});
      strip.append(im);
      return im;
    });
    $("media").replaceChildren(...(v.thumbs.length ? [el("div", {class: "frame"}, big), strip] : []), note);
    const p = {video: null, time: () => state.pos, toggle: () => {},
      seek: t => {
        state.pos = Math.max(0, Math.min(t, v.duration_s));
        let k = 0;
        v.thumbs.forEach((th, j) => { if (th.t <= state.pos + 1e-6) k = j; });
        imgs.forEach((im, j) => im.classList.toggle("cur", j === k));
        if (imgs.length) big.src = v.thumbs[k].src;
        tick();
      }};
    return p;
  }

  // ------------------------------------------------------------------ curves
  const PAD = {l: 30, r: 8, t: 6, b: 18};
  const ivPairs = () => state.intervals.map(iv => [iv.start_frame, iv.end_frame]);
  function drawMain() {
    const i = state.cur, v = D.videos[i];
    state.layout = drawCurve($("curve"), {scores: scoresOf(i), intervals: ivPairs(), threshold: state.threshold,
                                          pad: PAD, axis: true, fps: v.fps, clock: v.times ? clockOf(v) : null});
    $("curve").dataset.intervals = String(state.intervals.length);
    drawZoom();
    drawPlayhead();
  }
  function zoomRange(v) {
    const t = state.player ? state.player.time() : 0;
    const t0 = Math.max(0, Math.min(t - ZOOM_S / 2, v.duration_s - ZOOM_S));
    const c = clockOf(v);
    return [Math.floor(c.frameAt(t0)), Math.min(v.frames, Math.ceil(c.frameAt(t0 + ZOOM_S)))];
  }
  function drawZoom() {
    const i = state.cur, v = D.videos[i];
    const long = v.duration_s > 2 * ZOOM_S;
    $("zoombox").style.display = long ? "" : "none";
    if (!long) { state.zoomLayout = null; return; }
    const [f0, f1] = zoomRange(v);
    state.zoomLayout = drawCurve($("zoom"), {scores: scoresOf(i), f0, f1, intervals: ivPairs(), threshold: state.threshold,
                                             pad: PAD, axis: true, fps: v.fps, clock: v.times ? clockOf(v) : null});
  }
  function playheadOn(canvas, L, t, v) {
    const [ctx, w, h] = fitCanvas(canvas);
    ctx.clearRect(0, 0, w, h);
    if (!L) return;
    const f = clockOf(v).frameAt(t);
    if (f < L.f0 || f > L.f1) return;
    const x = L.X(f);
    ctx.strokeStyle = COLOURS.playhead; ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.moveTo(x, L.pad.t); ctx.lineTo(x, L.pad.t + L.ph); ctx.stroke();
  }
  function drawPlayhead() {
    const v = D.videos[state.cur], t = state.player.time();
    playheadOn($("overlay"), state.layout, t, v);
    playheadOn($("zoomoverlay"), state.zoomLayout, t, v);
    $("vinfo").dataset.time = t.toFixed(3);
    const k = state.intervals.findIndex(iv => t >= iv.start_s - 1e-6 && t < iv.end_s);
    [...$("intervals").tBodies[0].rows].forEach((tr, j) => tr.classList.toggle("cur", j === k));
  }
  let pending = false, lastZoom = -1;
  function tick() {
    if (pending || state.cur == null) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      const v = D.videos[state.cur];
      if (state.zoomLayout) {                     // redraw the zoomed curve when its window moved
        const f0 = zoomRange(v)[0];
        if (f0 !== lastZoom) { lastZoom = f0; drawZoom(); }
      }
      drawPlayhead();
    });
  }
  function clickToSeek(box, layout) {
    $(box).addEventListener("click", e => {
      const L = layout(), v = D.videos[state.cur];
      if (!L) return;
      const r = e.currentTarget.getBoundingClientRect();
      const f = L.f0 + (e.clientX - r.left - L.pad.l) / L.pw * (L.f1 - L.f0);
      state.player.seek(clockOf(v).timeOf(Math.max(0, Math.min(f, v.frames))));
    });
  }
  clickToSeek("curvebox", () => state.layout);
  clickToSeek("zoombox", () => state.zoomLayout);

  // ------------------------------------------------------------------ intervals
  function listIntervals() {
    const body = $("intervals").tBodies[0];
    body.replaceChildren(...state.intervals.map((iv, j) => el("tr",
      {class: "iv", dataset: {start: iv.start_s}, onclick: () => state.player.seek(iv.start_s)},
      el("td", {class: "num"}, j + 1), el("td", {class: "num"}, fmtTime(iv.start_s, true)),
      el("td", {class: "num"}, fmtTime(iv.end_s, true)), el("td", {class: "num"}, iv.duration_s.toFixed(1) + " s"),
      el("td", {class: "num"}, iv.peak_score.toFixed(3)), el("td", {class: "num"}, iv.mean_score.toFixed(3)))));
    $("iv-count").textContent = String(state.intervals.length);
  }
  function recompute() {
    state.intervals = intervalsOf(state.cur);
    listIntervals();
    drawMain();
  }
  function settingsChanged() {
    state.threshold = parseFloat($("threshold").value);
    state.minDuration = Math.max(0, parseFloat($("min-duration").value) || 0);
    state.mergeGap = Math.max(0, parseFloat($("merge-gap").value) || 0);
    $("thr-value").textContent = state.threshold.toFixed(2);
    recompute();
  }
  $("threshold").value = state.threshold;
  $("min-duration").value = state.minDuration;
  $("merge-gap").value = state.mergeGap;
  $("thr-value").textContent = state.threshold.toFixed(2);
  for (const id of ["threshold", "min-duration", "merge-gap"]) {
    $(id).addEventListener("input", settingsChanged);
    $(id).addEventListener("change", () => { updateCounts(); drawSparks(); });
  }

  function jump(dir) {
    const t = state.player.time(), ivs = state.intervals;
    const target = dir > 0 ? ivs.find(iv => iv.start_s > t + 0.05)
                           : [...ivs].reverse().find(iv => iv.start_s < t - 0.5);
    if (target) state.player.seek(target.start_s);
  }
  document.addEventListener("keydown", e => {
    if (e.target.tagName === "INPUT" && e.target.type === "number") return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "n" || e.key === "j") { jump(1); e.preventDefault(); }
    else if (e.key === "p" || e.key === "k") { jump(-1); e.preventDefault(); }
    else if (e.key === " " && e.target.tagName !== "VIDEO" && e.target.tagName !== "BUTTON") { state.player.toggle(); e.preventDefault(); }
  });

  // ------------------------------------------------------------------ selection
  function select(i) {
    if (i < 0 || i >= D.videos.length) return;
    state.cur = i; lastZoom = -1; state.pos = 0;
    const v = D.videos[i];
    rows.forEach((tr, j) => tr.classList.toggle("sel", j === i));
    $("vname").textContent = v.name;
    $("vinfo").textContent = `${v.file} \u00b7 ${fmtTime(v.duration_s, true)} \u00b7 ${v.frames} frames at ${+v.fps.toFixed(3)} fps`
      + (v.times ? " (variable frame rate: times are the frames' own)" : "")
      + ` \u00b7 peak ${v.max_score.toFixed(3)}` + (v.warning ? ` \u00b7 ${v.warning}` : "");
    state.player = v.src ? videoPlayer(v) : thumbPlayer(v);
    recompute();
    if (!v.src) state.player.seek(0);
    const box = $("index"), r = rows[i];                 // keep the chosen row in view (the index only)
    if (r.offsetTop < box.scrollTop || r.offsetTop + r.offsetHeight > box.scrollTop + box.clientHeight)
      box.scrollTop = r.offsetTop - box.clientHeight / 2;
  }
  function fromHash() {
    const m = /video=([^&]*)/.exec(location.hash);
    const name = m ? decodeURIComponent(m[1]) : null;
    const i = D.videos.findIndex(v => v.name === name);
    select(i >= 0 ? i : 0);
  }
  window.addEventListener("hashchange", fromHash);
  window.addEventListener("resize", () => { if (state.cur != null) drawMain(); drawSparks(); });

  if (D.videos.length) { fromHash(); drawSparks(); }
  else { $("vname").textContent = "No video with results in this folder."; $("viewer").querySelectorAll(".curvebox, #controls, #intervals").forEach(e => { e.style.display = "none"; }); }
  document.body.dataset.ready = "1";
  document.body.dataset.readyMs = performance.now().toFixed(0);
})();
