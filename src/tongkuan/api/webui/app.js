// The search page: pick, drop, paste, photograph or link a picture; see what was detected
// and the words read on it; refine by region, category or those words; page through similar
// products. Or search titles by keyword, sorted and within a price range. It calls only the same-origin /web/api routes, which hold
// no secret; in operator mode, /admin/checks too, with the admin token the operator typed.

const UPLOAD_LIMIT = 3 * 1024 * 1024;
const MAX_SIDE = 2048; // larger photos are scaled down in the browser before upload
const PAGE_SIZE = 20;
const MAX_OFFSET = 499;
const MAX_KEYWORD_PAGE = 10000;
const MAX_FOUND_BOXES = 3; // subjects drawn besides the main one, the searched one and the shopper's
const NEARLY = 0.85; // a box nearly holds another when this share of the other lies inside it

const TEXT = {
  zh: {
    tagline: "拍一张，找同款", queryTitle: "查询图片", dropTitle: "拖入、粘贴或选择一张商品图片",
    dropHint: "JPG、PNG、WEBP；大图会自动缩小", camera: "拍照", urlPlaceholder: "或粘贴图片网址 https://…",
    urlSearch: "搜索", regionHint: "点击框选区域重新搜索，或在图上拖出一个框", categories: "类目",
    results: "相似商品", prev: "上一页", next: "下一页",
    footer: "自托管商品图像搜索，兼容淘宝图片搜索 V2.0 接口", all: "全部",
    uploading: "正在上传图片…", searching: "正在搜索同款…", main: "主体", region: "区域", yours: "自选",
    page: (n) => `第 ${n} 页`, summary: (a, b) => `第 ${a}–${b} 个结果`, none: "没有找到相似商品",
    sales: (n) => `月销 ${n}`, similar: (s) => `相似度 ${s}%`,
    notImage: "这个文件不是图片", tooLarge: "图片过大，请换一张较小的图片", badUrl: "请输入 http 或 https 开头的图片网址",
    failed: "出错了，请稍后再试", network: "无法连接服务器，请稍后再试",
    keywordPlaceholder: "或输入关键词，如 牛奶", keywordSearch: "搜商品", sort: "排序", sortDefault: "综合",
    sortPriceAsc: "价格从低到高", sortPriceDesc: "价格从高到低", sortSales: "销量优先", price: "价格",
    priceMin: "最低价", priceMax: "最高价", noKeyword: "请输入要搜索的关键词",
    badPrice: "价格请填写数字，最低价不能高于最高价", wordResults: (k) => `“${k}”的搜索结果`,
    wordSummary: (n, a, b) => `共 ${n} 件商品，第 ${a}–${b} 件`, wordsNone: "没有找到相关商品",
    errInvalidImage: "图片无法识别，请换一张 JPG、PNG 或 WEBP 图片",
    errTooLarge: "图片过大，请换一张较小的图片",
    errFetch: "图片下载失败，请检查网址，或保存图片后上传",
    errForbidden: "这个图片网址不能使用，请保存图片后上传",
    errExpired: "图片已失效，请重新选择图片",
    errBusy: "搜索太频繁了，请稍等片刻再试",
    errRefused: "请求被拒绝，请刷新页面后再试",
    errBadRequest: "搜索条件有误，请检查后再试",
    errMissing: "找不到要访问的内容，请刷新页面后再试",
    errUnavailable: "服务暂时不可用，请稍后再试",
    errOverloaded: "现在使用的人太多了，请稍后再试",
    errServer: "服务器出错了，请稍后再试",
    langSwitch: "切换为英文", urlLabel: "图片网址", keywordLabel: "关键词", priceMinLabel: "最低价",
    priceMaxLabel: "最高价", pages: "翻页", legendSearched: "正在搜索", legendMain: "主体",
    boxLabel: (name, searched) => (searched ? `${name}，正在搜索` : `搜索${name}`),
    readWords: "图中文字", readSearch: "按文字搜索", removeWord: (w) => `去掉 ${w}`,
    operator: "运营", tokenLabel: "管理令牌", tokenPlaceholder: "管理令牌 TONGKUAN_ADMIN_TOKEN", signIn: "进入运营模式",
    operatorOn: "运营模式：可把结果标为同款，保存为检查", downloadChecks: "下载检查集", signOut: "退出",
    sameProduct: "是同款", sameLabel: (title) => `是同款：${title}`, savedCheck: "已保存",
    savedLabel: (title) => `已保存为同款：${title}`, tokenRefused: "管理令牌被拒绝，已退出运营模式",
  },
  en: {
    tagline: "Snap a product, find the same one", queryTitle: "Query picture", dropTitle: "Drop, paste or choose a product photo",
    dropHint: "JPG, PNG, WEBP; large photos are scaled down", camera: "Take a photo", urlPlaceholder: "or paste a picture URL https://…",
    urlSearch: "Search", regionHint: "Click a box to search that region, or drag a box on the picture", categories: "Categories",
    results: "Similar products", prev: "Previous", next: "Next",
    footer: "Self-hosted product image search, compatible with Taobao Image Search V2.0", all: "All",
    uploading: "Uploading the picture…", searching: "Searching…", main: "main", region: "region", yours: "yours",
    page: (n) => `Page ${n}`, summary: (a, b) => `Results ${a}–${b}`, none: "No similar products found",
    sales: (n) => `${n} sold`, similar: (s) => `${s}% similar`,
    notImage: "This file is not a picture", tooLarge: "The picture is too large; try a smaller one", badUrl: "Enter a picture URL starting with http or https",
    failed: "Something went wrong; try again later", network: "Cannot reach the server; try again later",
    keywordPlaceholder: "or search by keyword, e.g. milk", keywordSearch: "Find", sort: "Sort", sortDefault: "Best match",
    sortPriceAsc: "Price: low to high", sortPriceDesc: "Price: high to low", sortSales: "Best selling", price: "Price",
    priceMin: "min", priceMax: "max", noKeyword: "Enter a keyword to search for",
    badPrice: "Enter prices as numbers, the lowest no higher than the highest", wordResults: (k) => `Results for “${k}”`,
    wordSummary: (n, a, b) => `${n} products, ${a}–${b} shown`, wordsNone: "No products match",
    errInvalidImage: "The file could not be read as a picture; try a JPG, PNG or WEBP photo",
    errTooLarge: "The picture is too large; try a smaller one",
    errFetch: "The picture could not be downloaded; check the address, or save the picture and upload it",
    errForbidden: "This picture address cannot be used; save the picture and upload it instead",
    errExpired: "The picture is no longer available; choose it again",
    errBusy: "Too many searches at once; wait a moment and try again",
    errRefused: "The request was refused; reload the page and try again",
    errBadRequest: "The search could not be run as asked; check what you entered",
    errMissing: "Not found; reload the page and try again",
    errUnavailable: "The search is temporarily unavailable; try again in a moment",
    errOverloaded: "The search is very busy right now; try again in a moment",
    errServer: "Something went wrong on the server; try again later",
    langSwitch: "Switch to Chinese", urlLabel: "Picture URL", keywordLabel: "Keyword", priceMinLabel: "Lowest price",
    priceMaxLabel: "Highest price", pages: "Pages", legendSearched: "Searched", legendMain: "Main subject",
    boxLabel: (name, searched) => (searched ? `${name}, searched` : `Search ${name}`),
    readWords: "Words on the picture", readSearch: "Search by these words", removeWord: (w) => `Remove ${w}`,
    operator: "Operator", tokenLabel: "Admin token", tokenPlaceholder: "Admin token (TONGKUAN_ADMIN_TOKEN)",
    signIn: "Enter operator mode", operatorOn: "Operator mode: mark a result as the same product to save a check",
    downloadChecks: "Download check set", signOut: "Sign out",
    sameProduct: "Same product", sameLabel: (title) => `Same product: ${title}`, savedCheck: "Saved",
    savedLabel: (title) => `Saved as the same product: ${title}`, tokenRefused: "The admin token was refused; operator mode is off",
  },
};

const CATEGORY = {
  0: ["上衣", "Tops"], 1: ["连衣裙", "Dresses"], 2: ["下装", "Bottoms"], 3: ["箱包", "Bags"], 4: ["鞋靴", "Shoes"],
  5: ["配饰", "Accessories"], 6: ["零食", "Snacks"], 7: ["美妆", "Beauty"], 8: ["瓶装饮料", "Bottled drinks"],
  9: ["家具", "Furniture"], 20: ["玩具", "Toys"], 21: ["内衣", "Underwear"], 22: ["数码", "Digital"], 88888888: ["其他", "Other"],
};

// What the shopper reads for each kind of error the server names (`data.error` on the
// page's routes), then for each envelope code. The server's own message is for developers
// (Chinese and English at once, with addresses and rules) and is never shown.
const ERROR_TEXT = {
  invalid_image: "errInvalidImage", image_error: "errInvalidImage", image_too_large: "errTooLarge",
  body_too_large: "errTooLarge", fetch_failed: "errFetch", forbidden_address: "errForbidden",
  image_not_found: "errExpired", rate_limited: "errBusy", unauthorized: "errRefused",
  bad_parameter: "errBadRequest", not_found: "errMissing", method_not_allowed: "errMissing",
  unavailable: "errUnavailable", busy: "errOverloaded", server_error: "errServer",
};
const CODE_TEXT = {
  400: "errBadRequest", 401: "errRefused", 403: "errRefused", 404: "errMissing", 413: "errTooLarge",
  429: "errBusy", 500: "errServer", 502: "errUnavailable", 503: "errUnavailable", 504: "errUnavailable",
};

const $ = (id) => document.getElementById(id);
const state = {
  lang: localStorage.getItem("tongkuan.lang") || (navigator.language.startsWith("zh") ? "zh" : "en"),
  imageId: null, picUrl: null, region: null, categoryId: null, pageNo: 0,
  words: null, // the words the picture search ranks by instead of those read (null: as read)
  keyword: "", sort: "default", filter: null, wordPage: 1,
  view: null, data: null, busy: false, // view: "picture" or "words", the kind of search `data` answers
};
const t = (key, ...args) => {
  const value = TEXT[state.lang][key];
  return typeof value === "function" ? value(...args) : value;
};

class ApiError extends Error {}

function explain(code, kind) {
  return t(ERROR_TEXT[kind] || CODE_TEXT[code] || "failed");
}

async function call(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch {
    throw new ApiError(t("network"));
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(explain(response.status, null));
  }
  if (body.code !== 200) throw new ApiError(explain(body.code, body.data && body.data.error));
  return body.data;
}

// --- status -------------------------------------------------------------------------

function showStatus(kind, message) {
  const status = $("status");
  status.className = `status ${kind}`;
  status.textContent = message;
  status.hidden = false;
}

function clearStatus() {
  $("status").hidden = true;
}

async function busy(message, work) {
  state.busy = true;
  showStatus("loading", message);
  try {
    await work();
    clearStatus();
  } catch (error) {
    showStatus("error", error instanceof ApiError ? error.message : t("failed"));
  } finally {
    state.busy = false;
    renderPager();
  }
}

// --- choosing a picture -------------------------------------------------------------

async function shrink(file) {
  // Phone photos are often over the upload limit: scale them down here. A file the browser
  // cannot decode goes up as it is, so the server says what is wrong with it.
  if (file.size <= UPLOAD_LIMIT) return file;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    return file;
  }
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  return await new Promise((resolve) => canvas.toBlob((blob) => resolve(blob || file), "image/jpeg", 0.9));
}

async function useFile(file) {
  if (!file || state.busy) return;
  if (file.type && !file.type.startsWith("image/")) {
    showStatus("error", t("notImage"));
    return;
  }
  await busy(t("uploading"), async () => {
    const form = new FormData();
    form.append("image", await shrink(file), file.name || "photo.jpg");
    await start(await call("/web/api/upload", { method: "POST", body: form }));
  });
}

async function useUrl(url) {
  if (state.busy) return;
  if (!/^https?:\/\//i.test(url)) {
    showStatus("error", t("badUrl"));
    return;
  }
  await busy(t("uploading"), async () => {
    const form = new FormData();
    form.append("url", url);
    await start(await call("/web/api/upload", { method: "POST", body: form }));
  });
}

async function start(uploaded) {
  Object.assign(state, {
    imageId: uploaded.imageId, picUrl: uploaded.picUrl, region: null, categoryId: null, pageNo: 0, words: null,
  });
  const image = $("query-image");
  image.src = uploaded.picUrl;
  await image.decode().catch(() => {});
  await runPictureSearch();
}

// --- searching ----------------------------------------------------------------------

async function runPictureSearch() {
  const params = new URLSearchParams({ imageId: state.imageId, pageNo: String(state.pageNo) });
  if (state.region) params.set("region", state.region);
  if (state.categoryId !== null) params.set("categoryId", String(state.categoryId));
  if (state.words !== null) params.set("words", state.words.join(",")); // empty: the picture alone
  showStatus("loading", t("searching"));
  const data = await call(`/web/api/search?${params}`);
  Object.assign(state, { data, view: "picture" });
  showResults();
}

async function runWordSearch() {
  const params = new URLSearchParams({ keyword: state.keyword, page_no: String(state.wordPage) });
  if (state.sort !== "default") params.set("sort", state.sort);
  if (state.filter) params.set("filter", state.filter);
  showStatus("loading", t("searching"));
  const data = await call(`/web/api/keyword?${params}`);
  Object.assign(state, { data, view: "words" });
  showResults();
}

// After a search: on a phone the results start below the picture, so bring them into view
// (and back to their top after paging from the bottom), gently unless motion is reduced.
function showResults() {
  clearStatus(); // before measuring: the status line above the results goes
  render();
  const header = document.querySelector(".top").getBoundingClientRect().bottom;
  const results = document.querySelector(".results").getBoundingClientRect();
  const first = $("grid").firstElementChild.getBoundingClientRect();
  if (results.top >= header && first.bottom <= window.innerHeight) return;
  const reduced = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  window.scrollTo({ top: window.scrollY + results.top - header - 8, behavior: reduced ? "auto" : "smooth" });
}

// Runs a search with `changes` to the state (undone if it fails); resolves once it is shown.
function search(changes, run = runPictureSearch) {
  if (state.busy || (run === runPictureSearch && !state.imageId)) return Promise.resolve();
  const before = Object.fromEntries(Object.keys(changes).map((key) => [key, state[key]]));
  Object.assign(state, changes);
  return busy(t("searching"), async () => {
    try {
      await run();
    } catch (error) {
      Object.assign(state, before); // the page keeps showing what it showed
      syncControls();
      throw error;
    }
  });
}

// The price filter of the keyword form, in the API's syntax (`price:10-100`, an end left
// open when empty), or null for none; throws when the prices make no range.
function priceFilter() {
  const low = $("price-min").value.trim();
  const high = $("price-max").value.trim();
  if (!low && !high) return null;
  const number = /^\d+(\.\d{1,2})?$/;
  if ((low && !number.test(low)) || (high && !number.test(high)) || (low && high && Number(low) > Number(high))) {
    throw new ApiError(t("badPrice"));
  }
  return `price:${low}-${high}`;
}

function searchWords() {
  if (state.busy) return;
  const keyword = $("keyword").value.trim();
  if (!keyword) {
    showStatus("error", t("noKeyword"));
    return;
  }
  let filter;
  try {
    filter = priceFilter();
  } catch (error) {
    showStatus("error", error.message);
    return;
  }
  search({ keyword, sort: $("sort").value, filter, wordPage: 1 }, runWordSearch);
}

// The words on the picture search titles (and what the products' pictures show) as the
// keyword box would, with the form's sort and price range; they stay in the box to edit.
function searchReadWords() {
  if (state.busy || !state.data || !state.data.words || !state.data.words.length) return;
  $("keyword").value = state.data.words.join(" ");
  searchWords();
}

function syncControls() {
  $("sort").value = state.sort;
}

// --- drawing ------------------------------------------------------------------------

function parseRegion(text) {
  const [x1, x2, y1, y2] = text.split(",").map(Number);
  return { x1, x2, y1, y2 };
}

// A price as shops print it, always with two decimals: the API spells prices as DAJI does
// ("14.2", "50"). Rounded half up on the decimal digits themselves, never through a float.
function money(text) {
  const match = /^(\d+)(?:\.(\d+))?$/.exec(String(text));
  if (!match) return String(text);
  const digits = (match[2] || "").padEnd(3, "0");
  let cents = BigInt(match[1]) * 100n + BigInt(digits.slice(0, 2));
  if (digits[2] >= "5") cents += 1n;
  return `${cents / 100n}.${String(cents % 100n).padStart(2, "0")}`;
}

function render() {
  document.body.classList.add("searched");
  $("query").classList.add("compact");
  $("workspace").hidden = false;
  const words = state.view === "words";
  $("workspace").classList.toggle("words", words);
  $("results-title").textContent = words ? t("wordResults", state.keyword) : t("results");
  if (!words) {
    renderBoxes();
    renderReadWords();
    renderCategories();
  }
  syncControls();
  renderResults();
  renderPager();
}

// The boxes to draw: the subjects found, the main one first (the API keeps it first
// whichever region was searched, so the shopper can go back to it), and a box the shopper
// drew. Choosing the main subject runs the first search again, without a region.
function regionsOf(data) {
  const found = data.picInfo.multiRegion.map((r) => r.region);
  const entries = found.map((text, index) => ({ text, kind: index === 0 ? "main" : "found", rank: index }));
  if (state.region && !found.includes(state.region)) entries.push({ text: state.region, kind: "yours", rank: found.length });
  for (const entry of entries) {
    const r = parseRegion(entry.text);
    Object.assign(entry, r, { area: (r.x2 - r.x1) * (r.y2 - r.y1) });
  }
  return worthDrawing(entries);
}

function overlap(a, b) {
  const width = Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1);
  const height = Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1);
  return width > 0 && height > 0 ? width * height : 0;
}

const holds = (a, b) => overlap(a, b) >= NEARLY * b.area;

// The detector also reports groups of subjects (a shelf, the whole picture) around the ones it
// found: a box that nearly holds another subject, or repeats a box already drawn, is left
// out, and at most MAX_FOUND_BOXES others are drawn, best first. The main subject, the searched
// box and the shopper's own are always drawn. Found subjects are numbered as drawn.
function worthDrawing(entries) {
  const always = (e) => e.kind !== "found" || e.text === state.region;
  const subjects = entries.filter((e) => e.kind !== "yours");
  const innermost = (e) => !subjects.some((other) => other !== e && holds(e, other) && !holds(other, e));
  const drawn = entries.filter(always);
  let found = 0;
  for (const entry of entries) {
    if (always(entry) || found >= MAX_FOUND_BOXES || !innermost(entry)) continue;
    if (drawn.some((other) => holds(entry, other) && holds(other, entry))) continue;
    drawn.push(entry);
    found += 1;
  }
  drawn.sort((a, b) => a.rank - b.rank);
  let number = 0;
  for (const entry of drawn) if (entry.kind === "found") entry.number = ++number;
  return drawn;
}

// The smallest box holding the click: a box nested in a bigger one is chosen by a click
// inside it, the bigger one by a click outside it, whatever order they are drawn in.
function boxAt(event, entries, size) {
  const layer = $("boxes").getBoundingClientRect();
  const x = ((event.clientX - layer.left) * size.width) / layer.width;
  const y = ((event.clientY - layer.top) * size.height) / layer.height;
  const holding = entries.filter((e) => x >= e.x1 && x <= e.x2 && y >= e.y1 && y <= e.y2);
  return holding.reduce((best, e) => (best === null || e.area < best.area ? e : best), null);
}

function chooseRegion(entry) {
  search({ region: entry.kind === "main" ? null : entry.text, pageNo: 0, words: null });
}

function renderBoxes() {
  const boxes = $("boxes");
  boxes.replaceChildren();
  const data = state.data;
  if (!data) return;
  const size = data.imageSize;
  const entries = regionsOf(data);
  const searched = state.region || (entries.length ? entries[0].text : null);
  const main = entries.find((e) => e.kind === "main");
  document.querySelector("#legend .main").hidden = !main || main.text === searched;
  $("query-image").alt = t("queryTitle");
  // Larger boxes first, so a smaller one is drawn over the box it sits in.
  for (const entry of [...entries].sort((a, b) => b.area - a.area)) {
    const box = document.createElement("button");
    box.type = "button";
    box.className = "box";
    if (entry.kind === "main") box.classList.add("main");
    if (entry.text === searched) box.classList.add("searched");
    box.dataset.region = entry.text;
    Object.assign(box.style, {
      left: `${(100 * entry.x1) / size.width}%`, top: `${(100 * entry.y1) / size.height}%`,
      width: `${(100 * (entry.x2 - entry.x1)) / size.width}%`, height: `${(100 * (entry.y2 - entry.y1)) / size.height}%`,
    });
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = entry.kind === "main" ? t("main") : entry.kind === "yours" ? t("yours") : `${t("region")} ${entry.number}`;
    box.setAttribute("aria-label", t("boxLabel", tag.textContent, entry.text === searched));
    box.append(tag);
    box.addEventListener("click", (event) => {
      event.stopPropagation();
      if (dragged) return;
      // A click from the keyboard (detail 0) has no point: it chooses the focused box.
      chooseRegion(event.detail === 0 ? entry : boxAt(event, entries, size) || entry);
    });
    boxes.append(box);
  }
  placeTags();
}

// Labels go beside their box, inside the picture, clear of each other: the main subject's
// first, then the searched box's, then the rest. Each takes the first free spot of: above
// the box, along its top inside, below it, along its bottom inside (at its left edge, then
// its right), or else the free spot of the picture nearest its box's corner.
function placeTags() {
  const layer = $("boxes").getBoundingClientRect();
  if (!layer.width || !layer.height) return; // hidden: placed when shown again
  const boxes = [...$("boxes").querySelectorAll(".box:not(.drawing)")];
  const order = (box) => (box.classList.contains("main") ? 0 : box.classList.contains("searched") ? 1 : 2);
  const placed = [];
  for (const box of boxes.sort((a, b) => order(a) - order(b))) {
    const tag = box.querySelector(".tag");
    const b = box.getBoundingClientRect();
    const w = tag.offsetWidth;
    const h = tag.offsetHeight;
    const x0 = b.left - layer.left;
    const y0 = b.top - layer.top;
    const fits = (spot) => spot.y >= 0 && spot.y + h <= layer.height;
    const free = (spot) => placed.every((p) => spot.x + w <= p.x || p.x + p.w <= spot.x || spot.y + h <= p.y || p.y + p.h <= spot.y);
    const spots = [];
    for (const x of [x0, x0 + b.width - w]) {
      for (const y of [y0 - h, y0, y0 + b.height, y0 + b.height - h]) {
        spots.push({ x: Math.min(Math.max(x, 0), Math.max(layer.width - w, 0)), y });
      }
    }
    let spot = spots.find((s) => fits(s) && free(s));
    if (!spot) {
      const grid = [];
      for (let y = 0; y + h <= layer.height; y += h / 2) {
        for (let x = 0; x + w <= layer.width; x += w / 2) grid.push({ x, y });
      }
      const distance = (s) => Math.hypot(s.x - x0, s.y - y0);
      spot = grid.filter(free).sort((p, q) => distance(p) - distance(q))[0] || spots.find(fits) || { x: 0, y: 0 };
    }
    placed.push({ ...spot, w, h });
    // the tag sits in the box's padding box, inside its border
    tag.style.left = `${spot.x - x0 - box.clientLeft}px`;
    tag.style.top = `${spot.y - y0 - box.clientTop}px`;
  }
}

// The words read on the searched picture (or region) that ranked its products, or those the
// shopper kept: removing one searches again by the rest (none left: by the picture alone),
// in the same region and category, from the first page. Another region is read afresh.
function renderReadWords() {
  const read = state.data.words || [];
  $("read").hidden = !read.length;
  const list = $("read-words");
  list.replaceChildren();
  read.forEach((word, index) => {
    const chip = document.createElement("li");
    chip.className = "chip word";
    const text = document.createElement("span");
    text.textContent = word;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "remove";
    remove.textContent = "×";
    remove.setAttribute("aria-label", t("removeWord", word));
    remove.addEventListener("click", async () => {
      const focused = document.activeElement === remove;
      await search({ words: read.filter((w) => w !== word), pageNo: 0 });
      // the button is gone: the keyboard goes on from the chip that took its place
      const rest = [...list.querySelectorAll(".remove")];
      const next = rest[Math.min(index, rest.length - 1)];
      if (focused && next) next.focus({ preventScroll: true });
    });
    chip.append(text, remove);
    list.append(chip);
  });
}

function renderCategories() {
  const chips = $("categories");
  chips.replaceChildren();
  const data = state.data;
  const all = document.createElement("button");
  all.type = "button";
  all.className = "chip";
  all.dataset.category = "";
  all.textContent = t("all");
  if (state.categoryId === null) all.classList.add("active");
  all.addEventListener("click", () => search({ categoryId: null, pageNo: 0 }));
  chips.append(all);
  for (const { categoryId, score } of data.picInfo.mainRegion.multiCategoryId) {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "chip";
    chip.dataset.category = String(categoryId);
    const name = CATEGORY[categoryId] ? CATEGORY[categoryId][state.lang === "zh" ? 0 : 1] : String(categoryId);
    chip.append(name, " ");
    const b = document.createElement("b");
    b.textContent = `${Math.round(score * 100)}%`;
    chip.append(b);
    if (state.categoryId === categoryId) chip.classList.add("active");
    chip.addEventListener("click", () => search({ categoryId, pageNo: 0 }));
    chips.append(chip);
  }
}

function absolute(url) {
  return url.startsWith("//") ? `${location.protocol}${url}` : url;
}

function renderResults() {
  const grid = $("grid");
  grid.replaceChildren();
  const items = state.data.data;
  const words = state.view === "words";
  const first = words ? (state.wordPage - 1) * PAGE_SIZE : state.pageNo;
  if (!items.length) $("summary").textContent = "";
  else if (words) $("summary").textContent = t("wordSummary", state.data.total, first + 1, first + items.length);
  else $("summary").textContent = t("summary", first + 1, first + items.length);
  if (!items.length) {
    const empty = document.createElement("li");
    empty.className = "empty";
    empty.textContent = t(words ? "wordsNone" : "none");
    grid.append(empty);
    return;
  }
  const template = $("card");
  for (const item of items) {
    const card = template.content.firstElementChild.cloneNode(true);
    card.dataset.itemId = item.itemId;
    const link = card.querySelector(".link");
    if (/^(https?:)?\/\//i.test(item.url)) link.href = absolute(item.url); // never a script: link
    const img = card.querySelector("img");
    img.src = absolute(item.picUrl);
    img.alt = item.title;
    const score = card.querySelector(".score");
    if (typeof item.score === "number") score.textContent = t("similar", Math.round(item.score * 100));
    else score.hidden = true; // keyword results have no similarity
    card.querySelector(".title").textContent = item.title;
    card.querySelector(".now").textContent = money(item.zkFinalPrice);
    if (money(item.reservePrice) !== money(item.zkFinalPrice)) card.querySelector(".was").textContent = money(item.reservePrice);
    card.querySelector(".shop").textContent = item.shopTitle;
    card.querySelector(".place").textContent = item.provcity;
    card.querySelector(".sales").textContent = t("sales", item.volume);
    if (!words && adminToken()) card.append(sameButton(item));
    grid.append(card);
  }
}

// The pager shows only when there is another page to go to (or back to, from an empty one).
function renderPager() {
  const items = state.data ? state.data.data.length : 0;
  const words = state.view === "words";
  const onward = state.data && (words ? state.data.total > state.wordPage * PAGE_SIZE : items >= PAGE_SIZE);
  $("pager").hidden = !onward && !(state.data && (words ? state.wordPage > 1 : state.pageNo > 0));
  if (words) {
    $("prev").disabled = state.busy || state.wordPage === 1;
    $("next").disabled = state.busy || state.wordPage * PAGE_SIZE >= state.data.total || state.wordPage >= MAX_KEYWORD_PAGE;
    $("page").textContent = t("page", state.wordPage);
    return;
  }
  $("prev").disabled = state.busy || state.pageNo === 0;
  $("next").disabled = state.busy || items < PAGE_SIZE || state.pageNo + PAGE_SIZE > MAX_OFFSET;
  $("page").textContent = state.data ? t("page", Math.floor(state.pageNo / PAGE_SIZE) + 1) : "";
}

function turnPage(step) {
  if (state.view === "words") {
    search({ wordPage: Math.min(MAX_KEYWORD_PAGE, Math.max(1, state.wordPage + step)) }, runWordSearch);
  } else {
    search({ pageNo: Math.min(MAX_OFFSET, Math.max(0, state.pageNo + step * PAGE_SIZE)) });
  }
}

// --- dragging a box -----------------------------------------------------------------

let dragged = false;

function dragToSearch() {
  const stage = $("stage");
  let origin = null;
  let ghost = null;
  const point = (event) => {
    const rect = stage.getBoundingClientRect();
    return {
      x: Math.min(Math.max(event.clientX - rect.left, 0), rect.width),
      y: Math.min(Math.max(event.clientY - rect.top, 0), rect.height),
      rect,
    };
  };
  stage.addEventListener("pointerdown", (event) => {
    if (state.view !== "picture" || state.busy || event.button !== 0) return;
    origin = point(event);
    dragged = false;
  });
  stage.addEventListener("pointermove", (event) => {
    if (!origin) return;
    const p = point(event);
    if (!dragged && Math.hypot(p.x - origin.x, p.y - origin.y) < 8) return;
    if (!dragged) stage.setPointerCapture(event.pointerId);
    dragged = true;
    if (!ghost) {
      ghost = document.createElement("div");
      ghost.className = "box drawing";
      $("boxes").append(ghost);
    }
    Object.assign(ghost.style, {
      left: `${Math.min(origin.x, p.x)}px`, top: `${Math.min(origin.y, p.y)}px`,
      width: `${Math.abs(p.x - origin.x)}px`, height: `${Math.abs(p.y - origin.y)}px`,
    });
  });
  const finish = (event) => {
    if (!origin) return;
    const p = point(event);
    const start = origin;
    origin = null;
    if (ghost) ghost.remove();
    ghost = null;
    if (!dragged) return;
    const { width, height } = state.data.imageSize;
    const sx = width / p.rect.width;
    const sy = height / p.rect.height;
    const x1 = Math.round(Math.min(start.x, p.x) * sx);
    const x2 = Math.round(Math.max(start.x, p.x) * sx);
    const y1 = Math.round(Math.min(start.y, p.y) * sy);
    const y2 = Math.round(Math.max(start.y, p.y) * sy);
    if (x2 - x1 >= 8 && y2 - y1 >= 8) search({ region: `${x1},${x2},${y1},${y2}`, pageNo: 0, words: null });
    setTimeout(() => { dragged = false; }, 0);
  };
  stage.addEventListener("pointerup", finish);
  stage.addEventListener("pointercancel", () => {
    origin = null;
    if (ghost) ghost.remove();
    ghost = null;
  });
}

// --- operator mode: saving a search as a check ---------------------------------------

// An operator (who has the admin token) marks a result as the product the picture shows: the
// search (picture, region) is saved as a check through the admin API, for `tongkuan eval`.
// The token stays in this tab (sessionStorage) and travels only in the Authorization header;
// without it the page shows none of this.
const TOKEN_KEY = "tongkuan.adminToken";
const savedChecks = new Set(); // saved from this tab: a result drawn again stays saved

const adminToken = () => sessionStorage.getItem(TOKEN_KEY);
const checkKey = (itemId) => JSON.stringify([state.imageId, state.region, itemId]);

function renderOperator() {
  const token = adminToken();
  $("operator-form").hidden = Boolean(token);
  $("operator-tools").hidden = !token;
}

function openOperator(open) {
  $("operator-panel").hidden = !open;
  $("operator").setAttribute("aria-expanded", String(open));
  if (open && !adminToken()) $("operator-token").focus();
}

function setAdminToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  $("operator-token").value = "";
  renderOperator();
  if (state.data) renderResults();
}

// Calls an admin route with the token. A refused token is forgotten; another error says
// what the server said (operators read its messages, shoppers never see them).
async function adminFetch(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: { ...options.headers, Authorization: `Bearer ${adminToken()}` } });
  } catch {
    throw new ApiError(t("network"));
  }
  if (response.status === 401) {
    setAdminToken(null);
    throw new ApiError(t("tokenRefused"));
  }
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    throw new ApiError((body && body.message) || explain(response.status, null));
  }
  return response;
}

function showSaved(button, item, saved) {
  button.textContent = t(saved ? "savedCheck" : "sameProduct");
  button.setAttribute("aria-label", t(saved ? "savedLabel" : "sameLabel", item.title));
  button.disabled = saved;
}

function sameButton(item) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "same";
  showSaved(button, item, savedChecks.has(checkKey(item.itemId)));
  button.addEventListener("click", () => saveCheck(button, item));
  return button;
}

async function saveCheck(button, item) {
  if (state.busy || button.disabled) return;
  const check = { imageId: state.imageId, itemIds: [item.itemId] };
  if (state.region) check.region = state.region; // none: the main subject, as the search had it
  const key = checkKey(item.itemId);
  button.disabled = true;
  try {
    await adminFetch("/admin/checks", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(check),
    });
    savedChecks.add(key);
    showSaved(button, item, true);
    clearStatus();
  } catch (error) {
    button.disabled = false;
    showStatus("error", error instanceof ApiError ? error.message : t("failed"));
  }
}

// The saved check set, fetched with the token and handed to the browser as a file.
async function downloadChecks() {
  const link = $("checks-download");
  if (link.disabled) return;
  link.disabled = true;
  try {
    const response = await adminFetch("/admin/checks");
    const url = URL.createObjectURL(await response.blob());
    const anchor = document.createElement("a");
    anchor.href = url;
    anchor.download = "checks.jsonl";
    anchor.hidden = true;
    document.body.append(anchor);
    anchor.click();
    anchor.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (error) {
    showStatus("error", error instanceof ApiError ? error.message : t("failed"));
  } finally {
    link.disabled = false;
  }
}

function operatorMode() {
  $("operator").addEventListener("click", () => openOperator($("operator-panel").hidden));
  $("operator-form").addEventListener("submit", (event) => {
    event.preventDefault(); // the field has no name either: the token never goes into an address
    const token = $("operator-token").value.trim();
    if (token) setAdminToken(token);
  });
  $("sign-out").addEventListener("click", () => setAdminToken(null));
  $("checks-download").addEventListener("click", downloadChecks);
  renderOperator();
  if (adminToken()) openOperator(true);
}

// --- language -----------------------------------------------------------------------

function applyLanguage() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll("[data-i18n-placeholder]")) node.placeholder = t(node.dataset.i18nPlaceholder);
  for (const node of document.querySelectorAll("[data-i18n-aria-label]")) {
    node.setAttribute("aria-label", t(node.dataset.i18nAriaLabel));
  }
  $("lang").textContent = state.lang === "zh" ? "EN" : "中文";
  if (state.data) render();
  else renderPager();
}

// --- wiring -------------------------------------------------------------------------

function init() {
  const drop = $("drop");
  $("file").addEventListener("change", (event) => useFile(event.target.files[0]).finally(() => { event.target.value = ""; }));
  $("camera").addEventListener("change", (event) => useFile(event.target.files[0]).finally(() => { event.target.value = ""; }));
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer.files[0];
    if (file) useFile(file);
    else {
      const url = event.dataTransfer.getData("text/uri-list") || event.dataTransfer.getData("text/plain");
      if (url) useUrl(url.trim());
    }
  });
  document.addEventListener("paste", (event) => {
    if (event.target instanceof HTMLInputElement) return; // pasting text into the URL or keyword box
    const file = [...event.clipboardData.items].find((i) => i.kind === "file" && i.type.startsWith("image/"));
    if (file) {
      event.preventDefault();
      useFile(file.getAsFile());
    }
  });
  $("url-form").addEventListener("submit", (event) => {
    event.preventDefault();
    useUrl($("url").value.trim());
  });
  $("keyword-form").addEventListener("submit", (event) => {
    event.preventDefault();
    searchWords();
  });
  $("sort").addEventListener("change", () => {
    if (state.view === "words") search({ sort: $("sort").value, wordPage: 1 }, runWordSearch);
    else state.sort = $("sort").value;
  });
  $("read-search").addEventListener("click", searchReadWords);
  $("prev").addEventListener("click", () => turnPage(-1));
  $("next").addEventListener("click", () => turnPage(1));
  $("lang").addEventListener("click", () => {
    state.lang = state.lang === "zh" ? "en" : "zh";
    localStorage.setItem("tongkuan.lang", state.lang);
    applyLanguage();
  });
  dragToSearch();
  operatorMode();
  new ResizeObserver(() => placeTags()).observe($("boxes"));
  applyLanguage();
}

init();
