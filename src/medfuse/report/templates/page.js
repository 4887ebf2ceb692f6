"use strict";
// The medfuse QC page: draws MRI | fused | other | registration check in each plane from
// the volumes embedded as PNG mosaics. No network: everything comes from the data block.
(function () {
  const D = JSON.parse(document.getElementById("data").textContent);
  const [N, H, W] = D.dims;
  const T = D.tiles;
  const MW = T * W;
  const PANEL = 230;
  const state = { cursor: [N >> 1, H >> 1, W >> 1], alpha: 1, mode: "edges", mix: 0.8 };
  const vols = {};
  const planes = [];

  function decode(uri) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => {
        const c = document.createElement("canvas");
        c.width = img.width; c.height = img.height;
        const g = c.getContext("2d");
        g.drawImage(img, 0, 0);
        resolve(g.getImageData(0, 0, img.width, img.height).data);
      };
      img.onerror = reject;
      img.src = uri;
    });
  }
  // where voxel (k, r, c) of the collected stack lies in a mosaic's RGBA bytes
  function at(k, r, c) {
    const y = Math.floor(k / T) * H + r, x = (k % T) * W + c;
    return (y * MW + x) * 4;
  }
  function voxel(p, k, r, c) {
    const a = [0, 0, 0];
    a[p.axes[0]] = p.origin[p.axes[0]] + p.signs[0] * k;
    a[p.axes[1]] = p.origin[p.axes[1]] + p.signs[1] * r;
    a[p.axes[2]] = p.origin[p.axes[2]] + p.signs[2] * c;
    return a;
  }
  function planeCoords(p, a) {
    return [0, 1, 2].map(d => (a[p.axes[d]] - p.origin[p.axes[d]]) * p.signs[d]);
  }
  function letter(ctx, text, x, y) {
    ctx.fillStyle = "#ffd54a"; ctx.font = "bold 12px sans-serif"; ctx.fillText(text, x, y);
  }

  function makePlane(p) {
    const [n, h, w] = p.shape;
    const sy = p.spacing[0], sx = p.spacing[1];
    const scale = PANEL / Math.max(h * sy, w * sx);
    p.dw = Math.max(1, Math.round(w * sx * scale)); p.dh = Math.max(1, Math.round(h * sy * scale));
    const box = document.createElement("div"); box.className = "plane";
    const head = document.createElement("div"); head.className = "plane-head";
    const label = document.createElement("b"); label.textContent = p.name;
    const slider = document.createElement("input");
    slider.type = "range"; slider.min = 0; slider.max = n - 1; slider.id = "slider-" + p.name;
    slider.disabled = n < 2;
    const num = document.createElement("span");
    head.append(label, slider, num); box.append(head);
    const row = document.createElement("div"); row.className = "row"; box.append(row);
    p.canvases = {};
    for (const [key, cap] of [["mri", "MRI"], ["fused", "fused"], ["other", D.modality.toUpperCase()], ["check", "registration check"]]) {
      const panel = document.createElement("div"); panel.className = "panel";
      const cv = document.createElement("canvas"); cv.width = p.dw; cv.height = p.dh;
      cv.id = p.name + "-" + key;
      cv.addEventListener("click", ev => {
        const b = cv.getBoundingClientRect();
        const r = Math.min(h - 1, Math.max(0, Math.floor((ev.clientY - b.top) / b.height * h)));
        const c = Math.min(w - 1, Math.max(0, Math.floor((ev.clientX - b.left) / b.width * w)));
        state.cursor = voxel(p, planeCoords(p, state.cursor)[0], r, c);
        drawAll();
      });
      const capEl = document.createElement("div"); capEl.className = "cap"; capEl.textContent = cap;
      panel.append(cv, capEl); row.append(panel);
      p.canvases[key] = cv;
    }
    p.slider = slider; p.num = num;
    p.off = document.createElement("canvas"); p.off.width = w; p.off.height = h;
    p.buf = p.off.getContext("2d").createImageData(w, h);
    slider.addEventListener("input", () => {
      const q = planeCoords(p, state.cursor);
      state.cursor = voxel(p, +slider.value, q[1], q[2]);
      drawAll();
    });
    document.getElementById("views").append(box);
    planes.push(p);
  }

  function paint(p, key, k) {
    const [, h, w] = p.shape;
    const out = p.buf.data;
    const m = vols.mri, f = vols.fused, o = vols.other, e = vols.edges;
    const A = state.alpha, X = state.mix, tile = Math.max(4, Math.round(Math.max(h, w) / 8));
    let j = 0;
    for (let r = 0; r < h; r++) {
      for (let c = 0; c < w; c++, j += 4) {
        const a = voxel(p, k, r, c);
        const i = at(a[0], a[1], a[2]);
        let R, G, B;
        if (key === "mri") { R = G = B = m[i]; }
        else if (key === "fused") {
          R = (1 - A) * m[i] + A * f[i]; G = (1 - A) * m[i] + A * f[i + 1]; B = (1 - A) * m[i] + A * f[i + 2];
        } else if (key === "other") { R = o[i]; G = o[i + 1]; B = o[i + 2]; }
        else if (state.mode === "checkerboard") {
          const odd = (Math.floor(r / tile) + Math.floor(c / tile)) & 1;
          if (odd) { R = G = B = m[i]; } else { R = o[i]; G = o[i + 1]; B = o[i + 2]; }
        } else if (state.mode === "fade") {
          R = (1 - X) * m[i] + X * o[i]; G = (1 - X) * m[i] + X * o[i + 1]; B = (1 - X) * m[i] + X * o[i + 2];
        } else {
          const t = e[i] > 127 ? X : 0;
          R = (1 - t) * o[i]; G = (1 - t) * o[i + 1] + t * 255; B = (1 - t) * o[i + 2] + t * 255;
        }
        out[j] = R; out[j + 1] = G; out[j + 2] = B; out[j + 3] = 255;
      }
    }
    p.off.getContext("2d").putImageData(p.buf, 0, 0);
    const ctx = p.canvases[key].getContext("2d");
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(p.off, 0, 0, p.dw, p.dh);
    const q = planeCoords(p, state.cursor);
    const x = (q[2] + 0.5) / w * p.dw, y = (q[1] + 0.5) / h * p.dh;
    ctx.strokeStyle = "rgba(80,255,120,0.7)"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, p.dh); ctx.moveTo(0, y); ctx.lineTo(p.dw, y); ctx.stroke();
    letter(ctx, p.letters.left, 3, p.dh / 2 + 4); letter(ctx, p.letters.right, p.dw - 11, p.dh / 2 + 4);
    letter(ctx, p.letters.top, p.dw / 2 - 4, 13); letter(ctx, p.letters.bottom, p.dw / 2 - 4, p.dh - 4);
  }

  function drawAll() {
    for (const p of planes) {
      const k = planeCoords(p, state.cursor)[0];
      p.slider.value = k; p.num.textContent = "slice " + (k + 1) + " / " + p.shape[0];
      for (const key of ["mri", "fused", "other", "check"]) paint(p, key, k);
    }
    const a = state.cursor, M = D.affine;
    const mm = [0, 1, 2].map(i => M[i][0] * a[0] + M[i][1] * a[1] + M[i][2] * a[2] + M[i][3]);
    const dir = (v, pos, neg) => Math.abs(v).toFixed(1) + " " + (v >= 0 ? pos : neg);
    document.getElementById("cursor").textContent = "cursor " + dir(mm[0], "R", "L") + ", " +
      dir(mm[1], "A", "P") + ", " + dir(mm[2], "S", "I") + " mm";
    document.body.dataset.drawn = String(+(document.body.dataset.drawn || 0) + 1);
  }

  function text() {
    document.getElementById("title").textContent = D.title;
    const badges = document.getElementById("badges");
    const badge = (t, cls) => { const s = document.createElement("span"); s.className = "badge " + (cls || ""); s.textContent = t; badges.append(s); };
    badge(D.modality.toUpperCase());
    if (D.score !== null) badge("registration score " + D.score.toFixed(2), D.threshold === null || D.score >= D.threshold ? "ok" : "bad");
    badge(D.warnings.length ? D.warnings.length + " warning(s)" : "no warnings", D.warnings.length ? "warn" : "ok");
    if (D.step > 1) badge("shown at 1/" + D.step + " resolution");
    const wbox = document.getElementById("warnings");
    for (const w of D.warnings) { const p = document.createElement("p"); p.textContent = "Warning: " + w; wbox.append(p); }
    for (const [id, rows] of [["decisions", D.decisions], ["inputs", D.inputs]]) {
      const t = document.getElementById(id);
      for (const [k, v] of rows) { const tr = t.insertRow(); tr.insertCell().textContent = k; tr.insertCell().textContent = v; }
    }
    document.getElementById("summary").textContent = "Outputs: " + D.output.join(", ") + ". " + D.summary;
    const cb = D.colorbar, cbox = document.getElementById("colorbar-box");
    if (!cb) { cbox.querySelector("p").textContent = "colour input: shown as it is (no colour map)"; cbox.querySelector("canvas").remove(); }
    else {
      const img = new Image();
      img.onload = () => {
        const cv = document.getElementById("colorbar"), g = cv.getContext("2d");
        g.fillStyle = "#15171a"; g.fillRect(0, 0, cv.width, cv.height);
        g.drawImage(img, 10, 4, 280, 22);
        g.fillStyle = "#ddd"; g.font = "12px sans-serif";
        const fmt = v => Math.abs(v) >= 1000 ? v.toFixed(0) : (+v.toPrecision(3)).toString();
        g.fillText(fmt(cb.low), 6, 44); const hi = fmt(cb.high); g.fillText(hi, 290 - g.measureText(hi).width, 44);
        if (cb.floor !== null && cb.high > cb.low) {
          const x = 10 + 280 * (cb.floor - cb.low) / (cb.high - cb.low);
          g.strokeStyle = "#fff"; g.beginPath(); g.moveTo(x, 2); g.lineTo(x, 30); g.stroke();
          g.fillText("floor " + fmt(cb.floor), Math.min(220, Math.max(40, x - 24)), 56);
        }
      };
      img.src = cb.image;
      document.getElementById("colorbar-text").textContent = "window " + (+cb.low.toPrecision(4)) + " to " +
        (+cb.high.toPrecision(4)) + " " + cb.units + " (" + cb.source + ")" +
        (cb.floor !== null ? "; no colour at or below " + (+cb.floor.toPrecision(3)) + " " + cb.units : "");
    }
    const mbox = document.getElementById("mip-box");
    if (!D.mip) mbox.remove();
    else {
      const im = document.getElementById("mip"); im.src = D.mip.image;
      im.style.aspectRatio = (D.mip.size[1] / (D.mip.size[0] * D.mip.aspect)).toString();
      document.getElementById("mip-text").textContent = "coronal projection through the " +
        D.modality.toUpperCase() + " window, darker = more uptake; " + D.mip.left +
        " on the left, " + D.mip.top + " at the top";
    }
  }

  async function main() {
    text();
    const keys = ["mri", "other", "fused", "edges"];
    const decoded = await Promise.all(keys.map(k => decode(D.images[k])));
    keys.forEach((k, i) => { vols[k] = decoded[i]; });
    for (const p of D.planes) makePlane(p);
    const op = document.getElementById("opacity");
    op.addEventListener("input", () => { state.alpha = op.value / 100; document.getElementById("opacity-value").textContent = op.value + "%"; drawAll(); });
    const mode = document.getElementById("check-mode");
    mode.addEventListener("change", () => { state.mode = mode.value; drawAll(); });
    const mix = document.getElementById("mix");
    mix.addEventListener("input", () => { state.mix = mix.value / 100; drawAll(); });
    drawAll();
    document.body.dataset.ready = "1";
  }
  main().catch(err => { document.body.dataset.error = String(err); throw err; });
})();
