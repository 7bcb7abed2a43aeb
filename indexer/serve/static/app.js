// poolvec's page: search by image, review duplicate groups, see what the index holds.
// Plain JavaScript, no dependencies. File names reach the page only through textContent and attribute values:
// nothing from the server is ever parsed as HTML.
"use strict";

const THUMB_SIZE = 256;
const PAIR_SIZE = 512; // the side-by-side view of a verified match
const state = {
  token: sessionStorage.getItem("poolvec-token"),
  info: null,
  query: null, // {file} or {id, name}: re-run when the options change
  urls: { search: [], dups: [], pair: [], review: [] }, // blob: URLs to release when a view is redrawn
  dups: null,
  dupsLoaded: false,
  page: 0, // the page of groups shown (GROUPS_PER_PAGE each: 30 000 groups stay responsive)
  review: { at: 0, selected: 0, suggestion: null, members: [] },
};
const GROUPS_PER_PAGE = 50;
const REVIEW_SIZE = 1024;

// -- small helpers -------------------------------------------------------------------------------------------
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function setStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function basename(path) {
  const parts = String(path).split(/[\\/]/);
  return parts[parts.length - 1] || path;
}

function bytes(n) {
  if (n === undefined || n === null) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

// Ids are 63-bit integers: beyond what a JavaScript number holds exactly, so they are read as strings. Inside a
// JSON string every quote is escaped, so `"id":` followed by digits can only be a key and its number.
function parseJson(text) {
  return JSON.parse(text.replace(/"id":\s*(-?\d+)/g, '"id":"$1"'));
}

function toJson(value) {
  return JSON.stringify(value, null, 2).replace(/"id": "(-?\d+)"/g, '"id": $1');
}

// -- the API -------------------------------------------------------------------------------------------------
async function request(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.token) headers.set("Authorization", `Bearer ${state.token}`);
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    await askToken();
    return request(path, options);
  }
  return response;
}

async function api(path, options = {}) {
  const response = await request(path, options);
  const text = await response.text();
  if (!response.ok) {
    let detail = text;
    try {
      detail = JSON.parse(text).detail;
    } catch (_) {
      /* not JSON: show the text */
    }
    throw new Error(detail || `${response.status} ${response.statusText}`);
  }
  return parseJson(text);
}

let tokenWaiters = null;
function askToken() {
  if (!tokenWaiters) {
    tokenWaiters = [];
    const dialog = $("token-dialog");
    $("token-input").value = "";
    if (!dialog.open) dialog.showModal();
  }
  return new Promise((resolve) => tokenWaiters.push(resolve));
}

function tokenGiven(event) {
  event.preventDefault();
  state.token = $("token-input").value.trim();
  sessionStorage.setItem("poolvec-token", state.token);
  $("token-dialog").close();
  const waiters = tokenWaiters || [];
  tokenWaiters = null;
  waiters.forEach((resolve) => resolve());
}

// A thumbnail as a blob: URL (fetched with the token, which an <img src> could not send), or why there is none.
async function thumbnailUrl(id, size = THUMB_SIZE) {
  try {
    const response = await request(`api/images/${id}/thumbnail?size=${size}`);
    if (response.ok) return { url: URL.createObjectURL(await response.blob()) };
    let detail = `${response.status}`;
    try {
      detail = (await response.json()).detail;
    } catch (_) {
      /* keep the status */
    }
    return { error: detail };
  } catch (error) {
    return { error: error.message };
  }
}

async function loadThumbnail(img, holder, id, list) {
  const thumb = await thumbnailUrl(id);
  if (thumb.url) {
    list.push(thumb.url);
    img.src = thumb.url;
  } else {
    holder.replaceChildren(el("div", { class: "missing", title: thumb.error }, "no preview"));
  }
}

function releaseUrls(view) {
  state.urls[view].forEach((url) => URL.revokeObjectURL(url));
  state.urls[view] = [];
}

// A card for one stored image: thumbnail, name, path, size and dimensions; clicking it searches by it.
function imageCard(item, view, top = null) {
  const img = el("img", { alt: basename(item.path), decoding: "async" });
  const holder = el("div", { class: "thumb" }, img);
  const card = el(
    "article",
    { class: "card", tabindex: 0, "data-id": item.id, title: `search by ${item.path}` },
    holder,
    el(
      "div",
      { class: "meta" },
      top,
      el("div", { class: "name" }, basename(item.path)),
      el("div", { class: "path" }, item.path),
      el("div", { class: "dims" }, `${item.width}×${item.height} · ${bytes(item.size)}`),
    ),
  );
  const go = () => {
    showView("search");
    searchById(item.id, item.path);
  };
  card.addEventListener("click", go);
  card.addEventListener("keydown", (event) => {
    if (event.key === "Enter") go();
  });
  loadThumbnail(img, holder, item.id, state.urls[view]);
  return card;
}

// -- search --------------------------------------------------------------------------------------------------
function searchParams() {
  const params = new URLSearchParams();
  params.set("k", $("k").value || "24");
  const minScore = $("min-score").value.trim();
  if (minScore !== "") params.set("min_score", minScore);
  const under = $("under").value.trim();
  if (under !== "") params.set("under", under);
  params.set("verify", String($("verify").checked));
  return params;
}

async function searchByFile(file) {
  if (!file) return;
  if (state.info && file.size > state.info.server.max_upload_bytes) {
    setStatus(`${file.name}: too large (${bytes(file.size)}; up to ${bytes(state.info.server.max_upload_bytes)})`, true);
    return;
  }
  state.query = { file };
  const url = URL.createObjectURL(file);
  showQuery(url, file.name || "pasted image", true);
  const form = new FormData();
  form.append("image", file, file.name || "pasted-image");
  await runSearch(`api/search?${searchParams()}`, { method: "POST", body: form });
}

async function searchById(id, path) {
  state.query = { id, path };
  showQuery(null, path, false, id);
  const params = searchParams();
  params.set("id", id);
  await runSearch(`api/search?${params}`);
}

function showQuery(url, name, isUpload, id = null) {
  const img = $("query-img");
  if (img.dataset.url) URL.revokeObjectURL(img.dataset.url);
  img.removeAttribute("src");
  delete img.dataset.url;
  if (url) {
    state.shown = (state.shown || 0) + 1;
    img.src = url;
    img.dataset.url = url;
  } else if (id !== null) {
    const shown = (state.shown = (state.shown || 0) + 1);
    thumbnailUrl(id).then((thumb) => {
      if (!thumb.url) return;
      if (shown !== state.shown) return URL.revokeObjectURL(thumb.url); // another query came first
      img.src = thumb.url;
      img.dataset.url = thumb.url;
    });
  }
  $("query-name").textContent = name;
  $("query-note").textContent = isUpload ? "uploaded image" : "an indexed image (its stored vector)";
  $("query").hidden = false;
  $("drop").classList.add("compact");
}

async function runSearch(path, options = {}) {
  setStatus("searching…");
  const started = performance.now();
  try {
    const result = await api(path, options);
    const ms = Math.round(performance.now() - started);
    renderHits(result);
    setStatus(`${result.hits.length} hits in ${ms} ms`);
  } catch (error) {
    releaseUrls("search");
    $("hits").replaceChildren(); // the hits of an earlier query would pass for this one's
    setStatus(error.message, true);
  }
}

function renderHits(result) {
  releaseUrls("search");
  const grid = $("hits");
  const cards = result.hits.map((hit) =>
    imageCard(
      hit,
      "search",
      el(
        "div",
        { class: "top" },
        el("span", { class: "rank" }, `#${hit.rank}`),
        el("span", { class: "score", title: "cosine similarity" }, hit.score.toFixed(4)),
        verifiedBadge(hit, () =>
          showPair(
            { ...queryShown(), box: hit.box_query },
            { id: hit.id, name: hit.path, box: hit.box_hit },
            `${hit.inliers} matched points${hit.mirrored ? " (mirrored)" : ""}`,
          ),
        ),
      ),
    ),
  );
  grid.replaceChildren(...cards);
  if (!cards.length) grid.append(el("p", { class: "muted" }, "No hits (try a lower min score or another folder)."));
}

// "✓ N" on a verified match: clicking it shows the two images side by side, the matched region outlined.
function verifiedBadge(match, open) {
  if (!match.verified) return null;
  const badge = el(
    "button",
    { type: "button", class: "verified", title: "verified: local features correspond — compare side by side" },
    `✓ ${match.inliers}`,
  );
  badge.addEventListener("click", (event) => {
    event.stopPropagation(); // the card itself searches by its image
    open();
  });
  badge.addEventListener("keydown", (event) => event.stopPropagation());
  return badge;
}

// What the search view shows as its query: an uploaded file's blob: URL, or an indexed image's id.
function queryShown() {
  if (state.query && state.query.file) return { url: $("query-img").dataset.url, name: state.query.file.name };
  return { id: state.query.id, name: state.query.path };
}

// A matched region (fractions of the image: x0, y0, x1, y1) drawn over its image.
function matchOutline([x0, y0, x1, y1]) {
  const outline = el("div", { class: "match-box" });
  // through the CSSOM: the page's Content-Security-Policy refuses style attributes
  Object.assign(outline.style, {
    left: `${x0 * 100}%`,
    top: `${y0 * 100}%`,
    width: `${(x1 - x0) * 100}%`,
    height: `${(y1 - y0) * 100}%`,
  });
  return outline;
}

// Each member's matched region in the review: from its verified pair with the copy kept, else from its
// strongest verified pair (null: joined on its score alone, or an exact copy).
function matchedRegions(group, keep) {
  const position = new Map(group.members.map((m, n) => [m.path, n]));
  const best = group.members.map(() => null);
  for (const p of group.pairs || []) {
    if (!p.verified) continue;
    const a = position.get(group.paths[p.a]);
    const b = position.get(group.paths[p.b]);
    if (a === undefined || b === undefined) continue;
    for (const [n, other, box] of [
      [a, b, p.box_a],
      [b, a, p.box_b],
    ]) {
      const rank = (other === keep ? 1e9 : 0) + p.inliers;
      if (box && (!best[n] || rank > best[n].rank)) best[n] = { box, other, inliers: p.inliers, rank };
    }
  }
  return best;
}

// One side of the pair view: the image (a blob: URL, or an indexed image's thumbnail) and its matched region.
function pairSide(side, holder) {
  const img = el("img", { alt: basename(side.name || "") });
  const frame = el("div", { class: "pair-frame" }, img);
  if (side.box) frame.append(matchOutline(side.box));
  holder.replaceChildren(frame, el("div", { class: "path" }, side.name || ""));
  if (side.url) img.src = side.url;
  else
    thumbnailUrl(side.id, PAIR_SIZE).then((thumb) => {
      if (!thumb.url) return frame.replaceChildren(el("div", { class: "missing" }, thumb.error));
      state.urls.pair.push(thumb.url);
      img.src = thumb.url;
    });
}

function showPair(a, b, caption) {
  releaseUrls("pair");
  pairSide(a, $("pair-a"));
  pairSide(b, $("pair-b"));
  $("pair-caption").textContent = caption;
  $("pair-dialog").showModal();
}

function rerun() {
  if (!state.query) return;
  if (state.query.file) searchByFile(state.query.file);
  else searchById(state.query.id, state.query.path);
}

function firstImage(list) {
  for (const item of list || []) {
    if (item.kind === "file" && item.type.startsWith("image/")) return item.getAsFile();
  }
  return null;
}

// -- duplicates ----------------------------------------------------------------------------------------------
function sliderRange(normalized) {
  const slider = $("threshold");
  if (normalized) {
    slider.min = "0";
    slider.max = "1";
  } else {
    slider.min = "0.3";
    slider.max = "1";
  }
}

async function loadDuplicates(useDefault = false) {
  const params = new URLSearchParams();
  const normalized = $("normalize").checked;
  params.set("normalize", String(normalized));
  params.set("verify", String($("verify-dups").checked));
  if (!useDefault) params.set("threshold", $("threshold").value);
  const under = $("dups-under").value.trim();
  if (under !== "") params.set("under", under);
  setStatus("finding duplicates…");
  const started = performance.now();
  try {
    // the first page alone, shown at once; the rest of the groups (the server keeps them) behind it
    params.set("limit", String(GROUPS_PER_PAGE));
    const result = await api(`api/dups?${params}`);
    state.dups = result;
    sliderRange(result.normalized);
    $("threshold").value = String(result.threshold);
    $("threshold-value").textContent = Number(result.threshold).toFixed(2);
    renderGroups(result);
    const shown = result.groups.length;
    if (result.total > shown) {
      result.partial = true;
      setStatus(`${result.total} groups; the first ${shown} in ${Math.round(performance.now() - started)} ms…`);
      params.set("threshold", String(result.threshold)); // the same groups, whatever the default was
      params.set("offset", String(shown));
      params.delete("limit");
      const rest = await api(`api/dups?${params}`);
      if (state.dups !== result) return; // another search replaced it meanwhile
      result.groups.push(...rest.groups);
      result.partial = false;
      if (!reviewing()) renderGroups(result);
    }
    setStatus(`${result.groups.length} groups in ${Math.round(performance.now() - started)} ms`);
  } catch (error) {
    setStatus(error.message, true);
  }
}

function renderGroups(result) {
  releaseUrls("dups");
  const exact = result.groups.filter((g) => g.kind === "exact").length;
  const count = result.partial ? result.total : result.groups.length;
  const loading = result.partial ? ` (the first ${result.groups.length} shown, the rest loading)` : "";
  $("dups-summary").textContent =
    `${count} groups${loading}: ${exact} of exact copies, ${result.groups.length - exact} of near-duplicates ` +
    `(${result.verified ? "verified pairs, " : ""}` +
    `${result.normalized ? "normalised score" : "cosine"} ≥ ${Number(result.threshold).toFixed(2)}; ` +
    `default ${Number(result.default_threshold).toFixed(2)})`;
  const pages = Math.max(1, Math.ceil(count / GROUPS_PER_PAGE));
  state.page = Math.min(state.page, pages - 1);
  const first = state.page * GROUPS_PER_PAGE;
  $("pager").hidden = pages <= 1 || reviewing();
  $("page-info").textContent = `page ${state.page + 1} of ${pages}`;
  const shown = result.groups.slice(first, first + GROUPS_PER_PAGE);
  const sections = shown.map((group, i) => {
    const n = first + i;
    const pixels = group.members.map((m) => m.width * m.height);
    const largest = Math.max(...pixels);
    const unique = pixels.filter((p) => p === largest).length === 1; // mark the best copy when there is one
    const kind =
      group.kind === "exact" ? "Exact copies (same bytes)" : `Near-duplicates · score ≥ ${group.score.toFixed(3)}`;
    const box = el("input", { type: "checkbox", "data-group": n, "aria-label": `select group ${n + 1}` });
    box.checked = $("select-all").checked;
    return el(
      "section",
      { class: `group ${group.kind}`, "data-group": n },
      el(
        "header",
        {},
        box,
        el("span", { class: "kind" }, kind),
        el("span", { class: "muted" }, `${group.members.length} images`),
      ),
      pairRow(group),
      el(
        "div",
        { class: "members" },
        ...group.members.map((member) =>
          imageCard(
            member,
            "dups",
            unique && member.width * member.height === largest
              ? el("span", { class: "badge" }, "largest")
              : null,
          ),
        ),
      ),
    );
  });
  $("groups").replaceChildren(...sections);
  if (!sections.length) $("groups").append(el("p", { class: "muted" }, "No duplicates at this threshold."));
}

// The verified pairs that joined a group, each a button opening the two images side by side.
function pairRow(group) {
  const byPath = new Map(group.members.map((m) => [m.path, m]));
  const buttons = (group.pairs || [])
    .filter((p) => p.verified)
    .map((p) => {
      const a = byPath.get(group.paths[p.a]);
      const b = byPath.get(group.paths[p.b]);
      if (!a || !b) return null;
      return verifiedBadge(p, () =>
        showPair(
          { id: a.id, name: a.path, box: p.box_a },
          { id: b.id, name: b.path, box: p.box_b },
          `${p.inliers} matched points · score ${p.score.toFixed(3)}`,
        ),
      );
    })
    .filter(Boolean);
  if (!buttons.length) return null;
  return el("div", { class: "pairs" }, el("span", { class: "muted" }, "verified pairs:"), ...buttons);
}

function selectedGroups() {
  if (!state.dups) return [];
  if ($("select-all").checked) {
    // every group, but those unticked on the page shown
    const unticked = new Set(
      [...document.querySelectorAll("#groups input[type=checkbox][data-group]")]
        .filter((b) => !b.checked)
        .map((b) => Number(b.dataset.group)),
    );
    return state.dups.groups.filter((_, n) => !unticked.has(n));
  }
  const boxes = document.querySelectorAll("#groups input[type=checkbox][data-group]");
  return [...boxes].filter((b) => b.checked).map((b) => state.dups.groups[Number(b.dataset.group)]);
}

// -- review, one group at a time -----------------------------------------------------------------------------
function reviewing() {
  return !$("review").hidden;
}

function openReview() {
  if (!state.dups) return;
  $("groups").hidden = true;
  $("pager").hidden = true;
  $("review").hidden = false;
  showReviewGroup(state.page * GROUPS_PER_PAGE);
}

function closeReview() {
  $("review").hidden = true;
  $("groups").hidden = false;
  releaseUrls("review");
  renderGroups(state.dups);
}

async function showReviewGroup(at) {
  const groups = state.dups.groups;
  releaseUrls("review");
  if (!groups.length) {
    $("rv-pos").textContent = "no groups left";
    $("rv-reason").textContent = "Nothing left to review.";
    $("rv-members").replaceChildren();
    return;
  }
  at = Math.max(0, Math.min(at, groups.length - 1));
  const group = groups[at];
  Object.assign(state.review, { at, selected: 0, suggestion: null, members: group.members });
  $("rv-pos").textContent = `group ${at + 1} of ${groups.length}`;
  $("rv-reason").textContent = "choosing the copy to keep…";
  const params = new URLSearchParams();
  group.members.forEach((m) => params.append("ids", m.id));
  const figures = group.members.map((member, n) => reviewFigure(member, n));
  $("rv-members").replaceChildren(...figures);
  try {
    const suggestion = await api(`api/suggestions?${params}`);
    if (state.review.at !== at || state.dups.groups[at] !== group) return; // moved on meanwhile
    state.review.suggestion = suggestion;
    selectMember(suggestion.keep);
    const keeper = group.members[suggestion.keep];
    $("rv-reason").textContent = `keep ${basename(keeper.path)}: ${suggestion.reason}`;
    figures.forEach((figure, n) => {
      const note = figure.querySelector(".note");
      if (n === suggestion.keep) {
        figure.classList.add("keeper");
        note.replaceChildren(el("span", { class: "badge" }, "keep"), ` ${suggestion.reason}`);
      } else if (suggestion.derived[String(n)]) {
        note.textContent = suggestion.derived[String(n)].replace(/ from .*/, " from the kept copy or another");
      }
    });
    const regions = matchedRegions(group, suggestion.keep);
    figures.forEach((figure, n) => {
      const region = regions[n];
      if (!region) return;
      figure.querySelector(".rv-frame").append(matchOutline(region.box));
      const other = basename(group.members[region.other].path);
      figure
        .querySelector("figcaption")
        .append(el("div", { class: "match muted" }, `matched region: ${region.inliers} points with ${other}`));
    });
  } catch (error) {
    $("rv-reason").textContent = "";
    setStatus(error.message, true);
  }
}

function reviewFigure(member, n) {
  const img = el("img", { alt: basename(member.path), decoding: "async" });
  const frame = el("div", { class: "rv-frame" }, img);
  const box = el("div", { class: "zoom" }, frame);
  box.addEventListener("scroll", () => syncScroll(box));
  const figure = el(
    "figure",
    { "data-member": n, tabindex: 0 },
    box,
    el(
      "figcaption",
      {},
      el("div", { class: "name" }, basename(member.path)),
      el("div", { class: "path" }, member.path),
      el("div", { class: "dims" }, `${member.width}×${member.height} · ${bytes(member.size)}`),
      el("div", { class: "note muted" }),
    ),
  );
  figure.addEventListener("click", () => selectMember(n));
  thumbnailUrl(member.id, REVIEW_SIZE).then((thumb) => {
    if (thumb.url) {
      state.urls.review.push(thumb.url);
      img.src = thumb.url;
    } else {
      box.replaceChildren(el("div", { class: "missing", title: thumb.error }, "no preview"));
    }
  });
  applyZoom(frame);
  return figure;
}

function selectMember(n) {
  state.review.selected = n;
  for (const figure of document.querySelectorAll("#rv-members figure")) {
    figure.classList.toggle("selected", Number(figure.dataset.member) === n);
  }
}

// One zoom for every image of the group, and one scroll position (as a fraction): the same detail side by side.
function applyZoom(frame) {
  frame.style.width = `${Number($("rv-zoom").value) * 100}%`;
}

let syncing = false;
function syncScroll(source) {
  if (syncing) return;
  syncing = true;
  const fx = source.scrollLeft / Math.max(1, source.scrollWidth - source.clientWidth);
  const fy = source.scrollTop / Math.max(1, source.scrollHeight - source.clientHeight);
  for (const box of document.querySelectorAll("#rv-members .zoom")) {
    if (box === source) continue;
    box.scrollLeft = fx * (box.scrollWidth - box.clientWidth);
    box.scrollTop = fy * (box.scrollHeight - box.clientHeight);
  }
  syncing = false;
}

function idsJson(members) {
  return `[${members.map((m) => m.id).join(",")}]`; // ids are digit strings: sent as JSON numbers, whole
}

async function decide(kind, members) {
  return api("api/decisions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: `{"kind": ${JSON.stringify(kind)}, "ids": ${idsJson(members)}}`,
  });
}

async function notDuplicates() {
  const at = state.review.at;
  const group = state.dups.groups[at];
  if (!group) return;
  try {
    await decide("not-duplicates", group.members);
    state.dups.groups.splice(at, 1);
    setStatus(`marked as not duplicates: ${group.members.length} pictures`);
    showReviewGroup(at);
  } catch (error) {
    setStatus(error.message, true);
  }
}

async function keepSelected() {
  const member = state.review.members[state.review.selected];
  if (!member) return;
  try {
    await decide("keep", [member]);
    setStatus(`${basename(member.path)} will be kept`);
  } catch (error) {
    setStatus(error.message, true);
  }
}

async function resolveAll() {
  const trash = $("rv-trash").value.trim();
  if (!trash) {
    setStatus("give the trash folder first (where the duplicates go)", true);
    $("rv-trash").focus();
    return;
  }
  const body = (dryRun) => JSON.stringify({ action: "move", trash, dry_run: dryRun });
  const post = { method: "POST", headers: { "Content-Type": "application/json" } };
  try {
    const plan = await api("api/resolve", { ...post, body: body(true) });
    const question =
      `Move ${plan.files} files of ${plan.groups} groups to ${trash}, freeing ${bytes(plan.bytes_freed)}?` +
      (plan.refused.length ? ` (${plan.refused.length} left alone)` : "") +
      " Undo brings them back.";
    if (!plan.files || !window.confirm(question)) return;
    const done = await api("api/resolve", { ...post, body: body(false) });
    setStatus(`moved ${done.files} files of ${done.groups} groups to ${trash}`);
    await reloadReview();
  } catch (error) {
    setStatus(error.message, true);
  }
}

async function undoLast() {
  try {
    const done = await api("api/undo", { method: "POST" });
    setStatus(`undone: ${done.restored} files back in place` + (done.lost.length ? `, ${done.lost.length} lost` : ""));
    await reloadReview();
  } catch (error) {
    setStatus(error.message, true);
  }
}

async function reloadReview() {
  await loadDuplicates();
  if (reviewing()) showReviewGroup(state.review.at);
}

function reviewKeys(event) {
  if (!reviewing() || event.target.closest("input, textarea, select") || event.ctrlKey || event.metaKey) return;
  const actions = {
    ArrowRight: () => showReviewGroup(state.review.at + 1),
    n: () => showReviewGroup(state.review.at + 1),
    ArrowLeft: () => showReviewGroup(state.review.at - 1),
    p: () => showReviewGroup(state.review.at - 1),
    k: keepSelected,
    d: notDuplicates,
    a: resolveAll,
    u: undoLast,
    Escape: closeReview,
  };
  const action = actions[event.key];
  if (action) {
    event.preventDefault();
    action();
  }
}

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function csvCell(value) {
  const text = value === null || value === undefined ? "" : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function exportJson() {
  const groups = selectedGroups();
  if (!groups.length) return setStatus("select at least one group to export", true);
  const { threshold, normalized } = state.dups;
  download("duplicates.json", "application/json", `${toJson({ threshold, normalized, groups })}\n`);
  setStatus(`exported ${groups.length} groups as JSON`);
}

function exportCsv() {
  const groups = selectedGroups();
  if (!groups.length) return setStatus("select at least one group to export", true);
  const rows = [["group", "kind", "score", "id", "path", "size", "width", "height", "sha256"]];
  groups.forEach((group, n) => {
    for (const m of group.members) {
      rows.push([n + 1, group.kind, group.score, m.id, m.path, m.size, m.width, m.height, m.sha256]);
    }
  });
  download("duplicates.csv", "text/csv", rows.map((row) => row.map(csvCell).join(",")).join("\r\n") + "\r\n");
  setStatus(`exported ${groups.length} groups as CSV`);
}

// -- info ----------------------------------------------------------------------------------------------------
function tuningText(t) {
  if (!t) return "none (the embedding as configured)";
  return `${t.sampled} photos × ${t.per_image} edits = ${t.pairs} pairs, ${t.seconds} s`;
}

async function loadInfo() {
  try {
    const info = await api("api/info");
    state.info = info;
    const cfg = info.config || {};
    $("summary").textContent = `${info.count} images · ${info.collection} · ${info.backend}`;
    const worker = info.server.worker;
    const rows = [
      ["images", info.count],
      ["backend", info.backend],
      ["uri", info.uri],
      ["collection", info.collection],
      ["dimension", info.dim],
      ["backbone", cfg.backbone ? `${cfg.backbone} (${cfg.weights_id})` : "—"],
      ["layer", cfg.node ?? "—"],
      ["input", cfg.input ? JSON.stringify(cfg.input) : "—"],
      ["scales", cfg.scales ? JSON.stringify(cfg.scales) : "—"],
      ["pooling", cfg.pooling ? cfg.pooling.spec : "—"],
      ["tuning", tuningText(cfg.tuning)],
      ["vector index", `${info.vector_index.kind} ${JSON.stringify(info.vector_index.params)}`],
      ["fingerprint", info.fingerprint],
      ["server", `poolvec ${info.server.version}; uploads up to ${bytes(info.server.max_upload_bytes)}`],
      [
        "served",
        `${worker.searches} searches; ${worker.embedded} images embedded in ${worker.passes} passes ` +
          `(largest ${worker.largest_pass}); ${info.server.thumbnails_made} thumbnails made`,
      ],
    ];
    $("info-table").tBodies[0].replaceChildren(
      ...rows.map(([name, value]) => el("tr", {}, el("th", {}, name), el("td", {}, value))),
    );
  } catch (error) {
    setStatus(error.message, true);
  }
}

// -- views and events ----------------------------------------------------------------------------------------
function showView(name) {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.setAttribute("aria-selected", String(tab.dataset.view === name));
  }
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== `view-${name}`;
  if (name === "dups" && !state.dupsLoaded) {
    state.dupsLoaded = true;
    loadDuplicates(true);
  }
  if (name === "info") loadInfo();
}

function readTokenFromFragment() {
  const match = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (match) {
    state.token = decodeURIComponent(match[1]);
    sessionStorage.setItem("poolvec-token", state.token);
    history.replaceState(null, "", location.pathname + location.search); // keep it out of the address bar
  }
}

function init() {
  readTokenFromFragment();
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showView(tab.dataset.view));
  $("token-form").addEventListener("submit", tokenGiven);

  const drop = $("drop");
  $("pick").addEventListener("change", (event) => {
    searchByFile(event.target.files[0]);
    event.target.value = "";
  });
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") $("pick").click();
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = firstImage(event.dataTransfer.items) || event.dataTransfer.files[0];
    if (file) searchByFile(file);
    else setStatus("drop an image file (not a link)", true);
  });
  // a file dropped beside the zone must not make the browser leave the page
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  document.addEventListener("paste", (event) => {
    const file = firstImage(event.clipboardData && event.clipboardData.items);
    if (file) {
      showView("search");
      searchByFile(file);
    }
  });

  $("search-options").addEventListener("submit", (event) => {
    event.preventDefault();
    rerun();
  });
  for (const id of ["k", "min-score", "under"]) $(id).addEventListener("change", rerun);

  $("dups-options").addEventListener("submit", (event) => {
    event.preventDefault();
    loadDuplicates();
  });
  $("threshold").addEventListener("input", () => {
    $("threshold-value").textContent = Number($("threshold").value).toFixed(2);
  });
  $("threshold").addEventListener("change", () => loadDuplicates());
  $("normalize").addEventListener("change", () => loadDuplicates(true));
  $("verify-dups").addEventListener("change", () => loadDuplicates(true));
  $("verify").addEventListener("change", rerun);
  $("pair-close").addEventListener("click", () => $("pair-dialog").close());
  $("pair-dialog").addEventListener("close", () => releaseUrls("pair"));
  $("select-all").addEventListener("change", (event) => {
    for (const box of document.querySelectorAll("#groups input[type=checkbox][data-group]")) {
      box.checked = event.target.checked;
    }
  });
  $("export-json").addEventListener("click", exportJson);
  $("export-csv").addEventListener("click", exportCsv);
  $("page-prev").addEventListener("click", () => {
    state.page = Math.max(0, state.page - 1);
    renderGroups(state.dups);
  });
  $("page-next").addEventListener("click", () => {
    state.page += 1;
    renderGroups(state.dups);
  });
  $("review-open").addEventListener("click", openReview);
  $("rv-close").addEventListener("click", closeReview);
  $("rv-prev").addEventListener("click", () => showReviewGroup(state.review.at - 1));
  $("rv-next").addEventListener("click", () => showReviewGroup(state.review.at + 1));
  $("rv-keep").addEventListener("click", keepSelected);
  $("rv-distinct").addEventListener("click", notDuplicates);
  $("rv-apply").addEventListener("click", resolveAll);
  $("rv-undo").addEventListener("click", undoLast);
  $("rv-zoom").addEventListener("input", () => document.querySelectorAll("#rv-members .rv-frame").forEach(applyZoom));
  document.addEventListener("keydown", reviewKeys);

  loadInfo();
}

document.addEventListener("DOMContentLoaded", init);
