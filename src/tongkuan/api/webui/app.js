// The search page: pick, drop, paste, photograph or link a picture; see what was detected;
// refine by region or category; page through similar products. It calls only the
// same-origin /web/api routes, which hold no secret.

const UPLOAD_LIMIT = 3 * 1024 * 1024;
const MAX_SIDE = 2048; // larger photos are scaled down in the browser before upload
const PAGE_SIZE = 20;
const MAX_OFFSET = 499;

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
    notImage: "这个文件不是图片", tooLarge: "图片太大，请换一张较小的图片", badUrl: "请输入 http 或 https 开头的图片网址",
    failed: "出错了", network: "无法连接服务器，请稍后再试",
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
    failed: "Something went wrong", network: "Cannot reach the server; try again later",
  },
};

const CATEGORY = {
  0: ["上衣", "Tops"], 1: ["连衣裙", "Dresses"], 2: ["下装", "Bottoms"], 3: ["箱包", "Bags"], 4: ["鞋靴", "Shoes"],
  5: ["配饰", "Accessories"], 6: ["零食", "Snacks"], 7: ["美妆", "Beauty"], 8: ["瓶装饮料", "Bottled drinks"],
  9: ["家具", "Furniture"], 20: ["玩具", "Toys"], 21: ["内衣", "Underwear"], 22: ["数码", "Digital"], 88888888: ["其他", "Other"],
};

const $ = (id) => document.getElementById(id);
const state = {
  lang: localStorage.getItem("tongkuan.lang") || (navigator.language.startsWith("zh") ? "zh" : "en"),
  imageId: null, picUrl: null, region: null, categoryId: null, pageNo: 0, data: null, busy: false,
};
const t = (key, ...args) => {
  const value = TEXT[state.lang][key];
  return typeof value === "function" ? value(...args) : value;
};

class ApiError extends Error {}

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
    throw new ApiError(`${t("failed")} (HTTP ${response.status})`);
  }
  if (body.code !== 200) throw new ApiError(body.message || t("failed"));
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
    showStatus("error", error instanceof ApiError ? error.message : `${t("failed")}: ${error.message}`);
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
  await runSearch();
}

// --- searching ----------------------------------------------------------------------

async function runSearch() {
  const params = new URLSearchParams({ imageId: state.imageId, pageNo: String(state.pageNo) });
  if (state.region) params.set("region", state.region);
  if (state.categoryId !== null) params.set("categoryId", String(state.categoryId));
  showStatus("loading", t("searching"));
  state.data = await call(`/web/api/search?${params}`);
  render();
}

function search(changes) {
  if (state.busy || !state.imageId) return;
  const before = { region: state.region, categoryId: state.categoryId, pageNo: state.pageNo };
  Object.assign(state, changes);
  busy(t("searching"), async () => {
    try {
      await runSearch();
    } catch (error) {
      Object.assign(state, before); // the page keeps showing what it showed
      throw error;
    }
  });
}

// --- drawing ------------------------------------------------------------------------

function parseRegion(text) {
  const [x1, x2, y1, y2] = text.split(",").map(Number);
  return { x1, x2, y1, y2 };
}

function render() {
  document.body.classList.add("searched");
  $("query").classList.add("compact");
  $("workspace").hidden = false;
  renderBoxes();
  renderCategories();
  renderResults();
  renderPager();
}

function renderBoxes() {
  const boxes = $("boxes");
  boxes.replaceChildren();
  const data = state.data;
  if (!data) return;
  const { width, height } = data.imageSize;
  const searched = data.picInfo.mainRegion.region;
  const regions = data.picInfo.multiRegion.map((r) => r.region);
  if (state.region && !regions.includes(state.region)) regions.push(state.region);
  regions.forEach((text, index) => {
    const r = parseRegion(text);
    const box = document.createElement("button");
    box.type = "button";
    box.className = "box";
    if (index === 0 && !state.region) box.classList.add("main");
    if (text === searched) box.classList.add("searched", "main");
    box.dataset.region = text;
    Object.assign(box.style, {
      left: `${(100 * r.x1) / width}%`, top: `${(100 * r.y1) / height}%`,
      width: `${(100 * (r.x2 - r.x1)) / width}%`, height: `${(100 * (r.y2 - r.y1)) / height}%`,
    });
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = text === state.region && !data.picInfo.multiRegion.some((m) => m.region === text)
      ? t("yours") : index === 0 ? t("main") : `${t("region")} ${index + 1}`;
    box.append(tag);
    box.addEventListener("click", (event) => {
      event.stopPropagation();
      if (!dragged) search({ region: text, pageNo: 0 });
    });
    boxes.append(box);
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
  $("summary").textContent = items.length ? t("summary", state.pageNo + 1, state.pageNo + items.length) : "";
  if (!items.length) {
    const empty = document.createElement("li");
    empty.className = "empty";
    empty.textContent = t("none");
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
    card.querySelector(".score").textContent = t("similar", Math.round(item.score * 100));
    card.querySelector(".title").textContent = item.title;
    card.querySelector(".now").textContent = item.zkFinalPrice;
    if (item.reservePrice !== item.zkFinalPrice) card.querySelector(".was").textContent = item.reservePrice;
    card.querySelector(".shop").textContent = item.shopTitle;
    card.querySelector(".place").textContent = item.provcity;
    card.querySelector(".sales").textContent = t("sales", item.volume);
    grid.append(card);
  }
}

function renderPager() {
  const items = state.data ? state.data.data.length : 0;
  $("prev").disabled = state.busy || state.pageNo === 0;
  $("next").disabled = state.busy || items < PAGE_SIZE || state.pageNo + PAGE_SIZE > MAX_OFFSET;
  $("page").textContent = state.data ? t("page", Math.floor(state.pageNo / PAGE_SIZE) + 1) : "";
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
    if (!state.data || state.busy || event.button !== 0) return;
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
    if (event.target instanceof HTMLInputElement) return; // pasting text into the URL box
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
  $("prev").addEventListener("click", () => search({ pageNo: Math.max(0, state.pageNo - PAGE_SIZE) }));
  $("next").addEventListener("click", () => search({ pageNo: Math.min(MAX_OFFSET, state.pageNo + PAGE_SIZE) }));
  $("lang").addEventListener("click", () => {
    state.lang = state.lang === "zh" ? "en" : "zh";
    localStorage.setItem("tongkuan.lang", state.lang);
    applyLanguage();
  });
  dragToSearch();
  applyLanguage();
}

init();
