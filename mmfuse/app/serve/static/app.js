// The search page of `mmfuse serve`: reads ?q= (and k, fusion, modalities) from its URL, searches through
// /api/search, shows one card per video and plays a video from the start of its matched segment.
// Every text from the index or the query is inserted with textContent: nothing from data becomes markup.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("search"), input = $("q"), kInput = $("k"), fusionSelect = $("fusion");
  const modalityBox = $("modalities"), status = $("status"), results = $("results");
  const player = $("player"), video = $("video"), nowPlaying = $("now-playing");
  // what each built-in retriever matched ("dense": by meaning, not by words)
  const LABELS = {
    ocr: "on screen", asr: "speech", asr_dense: "speech (dense)", meta: "metadata", meta_dense: "metadata (dense)",
    asr_en: "speech, in English", asr_en_dense: "speech, in English (dense)", caption: "caption",
    caption_dense: "caption (dense)", visual: "picture", audio: "sound",
  };
  const details = new Map(); // video id -> promise of /api/videos/ID
  let serverK = 10;
  let generation = 0; // answers to an older search are dropped

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds || 0));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = String(s % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${r}` : `${m}:${r}`;
  }

  async function getJSON(url) {
    const r = await fetch(url, { headers: { Accept: "application/json" } });
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) throw new Error((body && body.error) || `${r.status} ${r.statusText}`);
    return body;
  }

  function videoDetails(id) {
    if (!details.has(id)) details.set(id, getJSON(`/api/videos/${encodeURIComponent(id)}`).catch(() => null));
    return details.get(id);
  }

  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  // ------------------------------------------------------------------------------------------ URL <-> form
  function checkedModalities() {
    const boxes = Array.from(modalityBox.querySelectorAll("input[type=checkbox]"));
    const on = boxes.filter((b) => b.checked).map((b) => b.value);
    return on.length === boxes.length ? null : on; // all = the server's default
  }

  function formToParams() {
    const p = new URLSearchParams();
    p.set("q", input.value.trim());
    if (kInput.value && Number(kInput.value) !== serverK) p.set("k", kInput.value);
    if (fusionSelect.value) p.set("fusion", fusionSelect.value);
    const mods = checkedModalities();
    if (mods && mods.length) p.set("modalities", mods.join(","));
    return p;
  }

  function urlToForm() {
    const p = new URLSearchParams(location.search);
    input.value = p.get("q") || "";
    kInput.value = p.get("k") || "";
    fusionSelect.value = p.get("fusion") || "";
    const want = p.get("modalities");
    const set = want ? new Set(want.split(",")) : null;
    modalityBox.querySelectorAll("input[type=checkbox]").forEach((b) => { b.checked = !set || set.has(b.value); });
    return p;
  }

  // ------------------------------------------------------------------------------------------ search
  async function search(params) {
    const q = params.get("q") || "";
    const mine = ++generation;
    if (!q.trim()) {
      results.replaceChildren();
      say("");
      document.title = "mmfuse search";
      return;
    }
    document.title = `${q} - mmfuse search`;
    say("Searching…");
    const t0 = performance.now();
    let doc;
    try {
      doc = await getJSON(`/api/search?${params}`);
    } catch (e) {
      if (mine === generation) { results.replaceChildren(); say(e.message, true); }
      return;
    }
    if (mine !== generation) return;
    const ms = Math.round(performance.now() - t0);
    const n = doc.hits.length;
    let line = `${n} result${n === 1 ? "" : "s"} for “${doc.query}” (${doc.fusion}, ${ms} ms)`;
    if (doc.warnings && doc.warnings.length) line += ` · ${doc.warnings.join(" · ")}`;
    say(line);
    results.replaceChildren(...doc.hits.map((hit) => card(hit, q)));
  }

  function terms(q) {
    return q.toLowerCase().split(/\s+/).filter((t) => t.length > 1)
      .map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  }

  function highlighted(text, q) {
    const out = document.createDocumentFragment();
    const words = terms(q);
    if (!words.length) { out.append(text); return out; }
    const re = new RegExp(`(${words.join("|")})`, "gi");
    text.split(re).forEach((part, i) => { out.append(i % 2 ? el("mark", null, part) : part); });
    return out;
  }

  function matches(hit) {
    return Object.entries(hit.modalities).map(([name, m]) => Object.assign({ name }, m))
      .sort((a, b) => a.rank - b.rank);
  }

  function card(hit, q) {
    const found = matches(hit);
    const best = found.find((m) => typeof m.start === "number");
    const start = best ? best.start : 0;
    const c = el("article", "card");
    c.tabIndex = 0;
    c.dataset.videoId = hit.video_id;
    c.dataset.start = String(start);
    const img = el("img", "grid");
    img.alt = `Frames of ${hit.video_id}`;
    img.loading = "lazy";
    img.width = 320;
    img.height = 240;
    img.src = `/api/videos/${encodeURIComponent(hit.video_id)}/grid.png`;
    const body = el("div", "body");
    const h = el("h2");
    const title = el("span", "title", hit.video_id);
    h.append(el("span", "rank", `#${hit.rank}`), title);
    const sub = el("p", "sub", `${hit.video_id} · score ${hit.score.toPrecision(4)}`);
    const list = el("ul", "matches");
    for (const m of found) {
      const li = el("li");
      li.title = `play from ${clock(m.start)}`;
      const isMeta = typeof m.segment_id === "string" && m.segment_id.endsWith("#meta");
      const mod = el("span", "mod", LABELS[m.name] || m.name);
      mod.title = `${m.name}: rank ${m.rank}, score ${m.score.toPrecision(4)}`;
      li.append(mod, el("span", "mrank", `#${m.rank}`),
        el("span", "time", isMeta || typeof m.start !== "number" ? "" : clock(m.start)));
      const t = el("span", "text");
      t.append(highlighted(m.text || "", q));
      li.append(t);
      li.addEventListener("click", (e) => { e.stopPropagation(); play(c, hit.video_id, m.start || 0); });
      list.append(li);
    }
    body.append(h, sub, list);
    c.append(img, body);
    c.addEventListener("click", () => play(c, hit.video_id, start));
    c.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); play(c, hit.video_id, start); } });
    videoDetails(hit.video_id).then((d) => {
      if (!d) return;
      if (d.title) title.textContent = d.title;
      c.title = [d.title, d.description, d.file, d.duration ? clock(d.duration) : ""].filter(Boolean).join(" · ");
    });
    return c;
  }

  function play(c, id, start) {
    results.querySelectorAll(".card.playing").forEach((x) => x.classList.remove("playing"));
    c.classList.add("playing");
    player.hidden = false;
    video.src = `/media/${encodeURIComponent(id)}#t=${Number(start).toFixed(2)}`;
    const title = c.querySelector(".title").textContent;
    nowPlaying.textContent = `${title} · from ${clock(start)}`;
    video.play().catch(() => { /* autoplay refused: the controls are there */ });
  }

  // ------------------------------------------------------------------------------------------ start
  async function setUp() {
    try {
      const h = await getJSON("/api/health");
      serverK = h.k;
      kInput.placeholder = String(h.k);
      kInput.max = String(h.limits.k);
      input.maxLength = h.limits.query_chars;
      for (const name of h.fusions) {
        const o = el("option", null, name === h.fusion ? `${name} (default)` : name);
        o.value = name === h.fusion ? "" : name;
        fusionSelect.append(o);
      }
      fusionSelect.querySelector("option").remove(); // the default is listed under its name
      // a modality name selects its dense twin too (asr: asr and asr_dense), as in `mmfuse search --modalities`
      for (const name of h.modalities.filter((m) => !m.endsWith("_dense") || !h.modalities.includes(m.slice(0, -6)))) {
        const label = el("label");
        const box = el("input");
        box.type = "checkbox";
        box.value = name;
        box.checked = true;
        label.append(box, ` ${LABELS[name] || name}`);
        modalityBox.append(label);
      }
    } catch (e) {
      say(e.message, true);
    }
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const params = formToParams();
    const url = `?${params}`;
    if (url !== location.search) history.pushState(null, "", url);
    search(params);
  });
  window.addEventListener("popstate", () => search(urlToForm()));
  setUp().then(() => search(urlToForm()));
})();
