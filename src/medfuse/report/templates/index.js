"use strict";
// The cohort index: sort (click a heading), filter by status, warnings and text; rows are
// drawn a page at a time so thousands of pairs stay quick, thumbnails load lazily.
(function () {
  const D = JSON.parse(document.getElementById("data").textContent);
  const rows = D.rows, STEP = 200;
  let shown = STEP, key = "n", dir = 1;
  const body = document.querySelector("#table tbody");
  const $ = id => document.getElementById(id);
  const badges = $("badges");
  for (const [s, cls] of [["fused", "ok"], ["failed", "bad"], ["skipped", ""]]) {
    const b = document.createElement("span"); b.className = "badge " + cls;
    b.textContent = D.counts[s] + " " + s; badges.append(b);
  }
  function value(r, k) {
    if (k === "w") return r.w.length;
    if (k === "i") return r.p ? 1 : 0;
    return r[k] === null || r[k] === undefined ? -Infinity : r[k];
  }
  function matching() {
    const st = $("status").value, wr = $("warned").value, q = $("search").value.toLowerCase();
    return rows.filter(r => (!st || r.s === st) && (!wr || (wr === "yes") === (r.w.length > 0)) &&
      (!q || (r.n + " " + r.e + " " + r.w.join(" ")).toLowerCase().includes(q)));
  }
  function cell(tr, content) { const td = tr.insertCell(); if (content instanceof Node) td.append(content); else td.textContent = content; return td; }
  function draw() {
    const list = matching().sort((a, b) => { const x = value(a, key), y = value(b, key); return (x < y ? -1 : x > y ? 1 : 0) * dir; });
    body.textContent = "";
    for (const r of list.slice(0, shown)) {
      const tr = body.insertRow(); tr.className = r.s;
      if (r.i) { const im = document.createElement("img"); im.loading = "lazy"; im.src = r.i; im.alt = ""; cell(tr, im); } else cell(tr, "");
      if (r.p) { const a = document.createElement("a"); a.href = r.p; a.textContent = r.n; cell(tr, a); } else cell(tr, r.n);
      cell(tr, r.s);
      cell(tr, r.r === null ? "" : r.r.toFixed(2));
      cell(tr, r.t === null ? "" : r.t.toFixed(1));
      cell(tr, r.s === "failed" ? r.e : r.w.join("; "));
    }
    $("shown").textContent = Math.min(shown, list.length) + " of " + list.length + " shown (" + rows.length + " pairs)";
    $("more").style.display = list.length > shown ? "" : "none";
    document.body.dataset.ready = "1";
  }
  document.querySelectorAll("#table th").forEach(th => th.addEventListener("click", () => {
    const k = th.dataset.key; dir = k === key ? -dir : 1; key = k; draw();
  }));
  for (const id of ["status", "warned", "search"]) $(id).addEventListener("input", () => { shown = STEP; draw(); });
  $("more").addEventListener("click", () => { shown += STEP; draw(); });
  draw();
})();
