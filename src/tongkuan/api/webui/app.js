// The search page: pick, drop, paste, photograph or link a picture; see what was detected;
// refine by region or category; page through similar products. Or search titles by keyword,
// sorted and within a price range. It calls only the same-origin /web/api routes, which hold
// no secret.

const UPLOAD_LIMIT = 3 * 1024 * 1024;
const MAX_SIDE = 2048; // larger photos are scaled down in the browser before upload
const PAGE_SIZE = 20;
const MAX_OFFSET = 499;
const MAX_KEYWORD_PAGE = 10000;

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
  Object.assign(state, { imageId: uploaded.imageId, picUrl: uploaded.picUrl, region: null, categoryId: null, pageNo: 0 });
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
  showStatus("loading", t("searching"));
  const data = await call(`/web/api/search?${params}`);
  Object.assign(state, { data, view: "picture" });
  render();
}

async function runWordSearch() {
  const params = new URLSearchParams({ keyword: state.keyword, page_no: String(state.wordPage) });
  if (state.sort !== "default") params.set("sort", state.sort);
  if (state.filter) params.set("filter", state.filter);
  showStatus("loading", t("searching"));
  const data = await call(`/web/api/keyword?${params}`);
  Object.assign(state, { data, view: "words" });
  render();
}

function search(changes, run = runPictureSearch) {
  if (state.busy || (run === runPictureSearch && !state.imageId)) return;
  const before = Object.fromEntries(Object.keys(changes).map((key) => [key, state[key]]));
  Object.assign(state, changes);
  busy(t("searching"), async () => {
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
    renderCategories();
  }
  syncControls();
  renderResults();
  renderPager();
}

// The boxes to draw: every subject found, the main one first (the API keeps it first
// whichever region was searched, so the shopper can go back to it), and a box the shopper
// drew. Choosing the main subject runs the first search again, without a region.
function regionsOf(data) {
  const found = data.picInfo.multiRegion.map((r) => r.region);
  const entries = found.map((text, index) => ({ text, kind: index === 0 ? "main" : "found", number: index + 1 }));
  if (state.region && !found.includes(state.region)) entries.push({ text: state.region, kind: "yours" });
  for (const entry of entries) {
    const r = parseRegion(entry.text);
    Object.assign(entry, r, { area: (r.x2 - r.x1) * (r.y2 - r.y1) });
  }
  return entries;
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
  search({ region: entry.kind === "main" ? null : entry.text, pageNo: 0 });
}

function renderBoxes() {
  const boxes = $("boxes");
  boxes.replaceChildren();
  const data = state.data;
  if (!data) return;
  const size = data.imageSize;
  const entries = regionsOf(data);
  const searched = state.region || (entries.length ? entries[0].text : null);
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
    box.append(tag);
    box.addEventListener("click", (event) => {
      event.stopPropagation();
      if (dragged) return;
      // A click from the keyboard (detail 0) has no point: it chooses the focused box.
      chooseRegion(event.detail === 0 ? entry : boxAt(event, entries, size) || entry);
    });
    boxes.append(box);
  }
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
    grid.append(card);
  }
}

function renderPager() {
  const items = state.data ? state.data.data.length : 0;
  if (state.view === "words") {
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
    if (x2 - x1 >= 8 && y2 - y1 >= 8) search({ region: `${x1},${x2},${y1},${y2}`, pageNo: 0 });
    setTimeout(() => { dragged = false; }, 0);
  };
  stage.addEventListener("pointerup", finish);
  stage.addEventListener("pointercancel", () => {
    origin = null;
    if (ghost) ghost.remove();
    ghost = null;
  });
}

// --- language -----------------------------------------------------------------------

function applyLanguage() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll("[data-i18n-placeholder]")) node.placeholder = t(node.dataset.i18nPlaceholder);
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
  $("prev").addEventListener("click", () => turnPage(-1));
  $("next").addEventListener("click", () => turnPage(1));
  $("lang").addEventListener("click", () => {
    state.lang = state.lang === "zh" ? "en" : "zh";
    localStorage.setItem("tongkuan.lang", state.lang);
    applyLanguage();
  });
  dragToSearch();
  applyLanguage();
}

init();
