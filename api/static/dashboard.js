// Stock Sentinel's live dashboard: reads the API like any client and follows /stream.
// No build step: an ES module of our own, and lightweight-charts' standalone build
// (window.LightweightCharts) loaded from where the API serves it, when it is installed.

const config = JSON.parse(document.getElementById("config").textContent);
const $ = (id) => document.getElementById(id);
const KEY_STORE = "sentinel-api-key";
const INTERVAL_STORE = "sentinel-interval";
const INTERVALS = [["", "stored bars"], ["1m", "1 min"], ["5m", "5 min"], ["15m", "15 min"],
  ["1h", "1 hour"], ["1d", "1 day"]];
const SECONDS = { s: 1, m: 60, h: 3600, d: 86400 };
// The volatility model the page shows, and those its band spans: the API's (page config).
const VOL_MODEL = config.forecastModel;
const VOL_BAND_MODELS = config.bandModels;
const HISTORY_BARS = 300;
const COLORS = { up: "#26a69a", down: "#ef5350", realized: "#4ea1ff", forecast: "#f0b429",
  band: "#8b96a3", grid: "#1e2630", text: "#aab4bf", bg: "#151b23" };

const state = {
  key: sessionStorage.getItem(KEY_STORE) || "",
  interval: localStorage.getItem(INTERVAL_STORE) || "",
  tickers: new Map(), // symbol -> row state
  selected: decodeURIComponent(location.hash.slice(1)) || null,
  barSeconds: null,
  health: null,
  healthAt: 0,
  generation: 0, // bumps on every detail load: late answers of an older one are dropped
  streamOpened: false,
  refetches: 0,
};
window.sentinelDashboard = state; // for the browser test and for curious users

// -- formatting ----------------------------------------------------------------------

const tz = config.timeZone || "UTC";
const dtf = (opts, zone = tz) => new Intl.DateTimeFormat("en-US", { timeZone: zone, hourCycle: "h23", ...opts });
const fmt = {
  clock: dtf({ hour: "2-digit", minute: "2-digit", second: "2-digit" }),
  minute: dtf({ hour: "2-digit", minute: "2-digit" }),
  day: dtf({ month: "short", day: "numeric" }),
  month: dtf({ month: "short", year: "numeric" }),
  year: dtf({ year: "numeric" }),
  full: dtf({ month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short" }),
  utcClock: dtf({ hour: "2-digit", minute: "2-digit", second: "2-digit" }, "UTC"),
  utc: dtf({ year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" }, "UTC"),
};
const zoneName = (fmt.full.formatToParts(new Date()).find((p) => p.type === "timeZoneName") || {}).value || tz;

const isNum = (v) => typeof v === "number" && Number.isFinite(v);
const price = (v) => (isNum(v) ? v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }) : "–");
const signed = (text, v) => (v > 0 ? `+${text}` : v < 0 ? `−${text.replace("-", "")}` : text);
const bp = (r, digits = 1) => (isNum(r) ? signed(`${(r * 1e4).toFixed(digits)} bp`, r) : "–");
const pct = (v, digits = 1) => (isNum(v) ? `${(v * 100).toFixed(digits)}%` : "–");
const fixed = (v, digits = 2) => {
  if (!isNum(v)) return "–";
  return signed(Math.abs(v) >= 1e4 ? v.toExponential(1) : v.toFixed(digits), v);
};
const epoch = (iso) => Math.floor(Date.parse(iso) / 1000);
const utcText = (ms) => `${fmt.utc.format(ms).replace(",", "")} UTC`;
const marketText = (ms) => fmt.full.format(ms);
function age(seconds) {
  if (!isNum(seconds)) return "–";
  if (seconds < 10) return `${Math.max(0, seconds).toFixed(1)} s`;
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}
function timeElement(iso, format = fmt.clock) {
  const ms = Date.parse(iso);
  const el = document.createElement("time");
  el.dateTime = iso;
  el.textContent = format.format(ms);
  el.title = `${marketText(ms)} · ${utcText(ms)}`;
  return el;
}
function intervalSeconds(text) {
  if (!text) return null;
  const m = /^(\d+)([smhd]?)$/.exec(text);
  return m ? Number(m[1]) * (SECONDS[m[2]] || 1) : null;
}
// Midnight today in the market's time zone, as a Date (UTC inside).
function marketMidnight(now = Date.now()) {
  const parts = Object.fromEntries(
    dtf({ year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" })
      .formatToParts(now).map((p) => [p.type, Number(p.value)]),
  );
  const asUtc = Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour % 24, parts.minute, parts.second);
  const offset = asUtc - Math.floor(now / 1000) * 1000;
  return new Date(Date.UTC(parts.year, parts.month - 1, parts.day) - offset);
}

// -- the API -------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (state.key) headers["X-API-Key"] = state.key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, "the API cannot be reached");
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = data && typeof data.error === "string" ? data.error : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  return data;
}
const sym = (s) => encodeURIComponent(s);

function notice(text) {
  const el = $("notice");
  el.textContent = text || "";
  el.hidden = !text;
}
function reportReadError(err) {
  if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
    notice(`${err.message}. This API needs its key to read: enter it under “Add or remove a ticker”.`);
    $("key-row").hidden = false;
  } else if (err instanceof ApiError && err.status === 0) {
    notice("The API cannot be reached; retrying.");
  } else {
    notice(err.message);
  }
}

// -- charts --------------------------------------------------------------------------

const charts = {};

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const el = document.createElement("script");
    el.src = src;
    el.onload = resolve;
    el.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.append(el);
  });
}

function tickMark(time, type) {
  const ms = time * 1000;
  return [fmt.year, fmt.month, fmt.day, fmt.minute, fmt.clock][type].format(ms);
}

function makeChart(el, priceFormatter) {
  const LC = window.LightweightCharts;
  return LC.createChart(el, {
    autoSize: true,
    layout: { background: { type: "solid", color: COLORS.bg }, textColor: COLORS.text, attributionLogo: false,
      fontFamily: getComputedStyle(document.body).fontFamily },
    grid: { vertLines: { color: COLORS.grid }, horzLines: { color: COLORS.grid } },
    rightPriceScale: { borderColor: COLORS.grid },
    // At most 14 px a bar: a few bars stay candles, not slabs.
    timeScale: { borderColor: COLORS.grid, timeVisible: true, secondsVisible: true, tickMarkFormatter: tickMark,
      maxBarSpacing: 14, rightOffset: 2 },
    localization: { timeFormatter: (t) => marketText(t * 1000), priceFormatter },
    crosshair: { mode: LC.CrosshairMode.Normal },
  });
}

function legend(chart, el, describe) {
  chart.subscribeCrosshairMove((param) => {
    if (!param.time) {
      el.textContent = "";
      el.title = "";
      return;
    }
    const ms = param.time * 1000;
    el.textContent = `${fmt.clock.format(ms)} ${zoneName} (${fmt.utcClock.format(ms)} UTC) ${describe(param)}`;
    el.title = utcText(ms);
    el.dataset.utc = utcText(ms);
  });
}

async function setUpCharts() {
  if (!config.charts) {
    chartsMissing("Charts are not installed with this API: run `make` (it installs lightweight-charts with `npm ci`), then reload. Tables and the form work without them.");
    return;
  }
  try {
    await loadScript(config.charts);
  } catch (err) {
    chartsMissing(`Charts could not be loaded (${err.message}); tables and the form still work.`);
    return;
  }
  const LC = window.LightweightCharts;
  const pxFormat = (v) => price(v);
  charts.price = makeChart($("price-chart"), pxFormat);
  charts.candles = charts.price.addSeries(LC.CandlestickSeries, {
    upColor: COLORS.up, downColor: COLORS.down, borderVisible: false,
    wickUpColor: COLORS.up, wickDownColor: COLORS.down,
  });
  charts.volume = charts.price.addSeries(LC.HistogramSeries, {
    priceScaleId: "volume", priceFormat: { type: "volume" }, lastValueVisible: false, priceLineVisible: false,
  });
  charts.price.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  charts.candles.priceScale().applyOptions({ scaleMargins: { top: 0.15, bottom: 0.25 } });
  charts.markers = LC.createSeriesMarkers(charts.candles, []);
  legend(charts.price, $("price-legend"), (p) => {
    const c = p.seriesData.get(charts.candles);
    const v = p.seriesData.get(charts.volume);
    return c ? `O ${price(c.open)} H ${price(c.high)} L ${price(c.low)} C ${price(c.close)} · vol ${v ? v.value.toLocaleString("en-US") : "–"}` : "";
  });

  const volFormat = (v) => pct(v);
  charts.vol = makeChart($("vol-chart"), volFormat);
  const dashed = { color: COLORS.band, lineWidth: 1, lineStyle: LC.LineStyle.Dashed, lastValueVisible: false, priceLineVisible: false, crosshairMarkerVisible: false };
  charts.volLow = charts.vol.addSeries(LC.LineSeries, dashed);
  charts.volHigh = charts.vol.addSeries(LC.LineSeries, dashed);
  charts.realized = charts.vol.addSeries(LC.LineSeries, { color: COLORS.realized, lineWidth: 2, priceLineVisible: false });
  charts.volForecast = charts.vol.addSeries(LC.LineSeries, { color: COLORS.forecast, lineWidth: 2, priceLineVisible: false });
  legend(charts.vol, $("vol-legend"), (p) => {
    const r = p.seriesData.get(charts.realized);
    const f = p.seriesData.get(charts.volForecast);
    return `realized ${r ? pct(r.value) : "–"} · forecast ${f ? pct(f.value) : "–"}`;
  });

  const bpFormat = (v) => `${v.toFixed(1)}`;
  charts.ret = makeChart($("ret-chart"), bpFormat);
  charts.actual = charts.ret.addSeries(LC.HistogramSeries, { priceLineVisible: false, lastValueVisible: false });
  charts.retLow = charts.ret.addSeries(LC.LineSeries, dashed);
  charts.retHigh = charts.ret.addSeries(LC.LineSeries, dashed);
  charts.retForecast = charts.ret.addSeries(LC.LineSeries, { color: COLORS.forecast, lineWidth: 2, priceLineVisible: false });
  legend(charts.ret, $("ret-legend"), (p) => {
    const a = p.seriesData.get(charts.actual);
    const f = p.seriesData.get(charts.retForecast);
    const lo = p.seriesData.get(charts.retLow);
    const hi = p.seriesData.get(charts.retHigh);
    const band = lo && hi ? ` [${lo.value.toFixed(1)}, ${hi.value.toFixed(1)}]` : "";
    return `actual ${a ? `${a.value.toFixed(1)} bp` : "–"} · forecast ${f ? `${f.value.toFixed(1)} bp` : "–"}${band}`;
  });
}

function chartsMissing(text) {
  const note = $("charts-note");
  note.textContent = text;
  note.hidden = false;
  for (const id of ["price-box", "vol-box", "ret-box"]) $(id).hidden = true;
}

// Series updates must not go back in time (lightweight-charts refuses): keep the newest.
function safeUpdate(series, point) {
  if (!series) return;
  const data = series.data();
  const last = data.length ? data[data.length - 1].time : -Infinity;
  if (point.time >= last) series.update(point);
}

// -- the tickers table ---------------------------------------------------------------

function rowState(symbol) {
  if (!state.tickers.has(symbol)) {
    state.tickers.set(symbol, { symbol, last: null, lastTime: null, open: null, openTime: null,
      rv: null, annual: null, fcst: null, sharpe: null, alerts: [], el: null });
  }
  return state.tickers.get(symbol);
}

async function loadTickers() {
  const list = await api("tickers?active=true");
  const symbols = list.map((t) => t.symbol);
  for (const s of [...state.tickers.keys()]) if (!symbols.includes(s)) dropRow(s);
  for (const s of symbols) rowState(s);
  renderTable();
  const keep = state.selected && state.tickers.has(state.selected);
  select(keep ? state.selected : symbols[0] || null, false);
  await Promise.all(symbols.map((s) => refreshRow(s)));
  await loadAlertsToday();
}

async function refreshRow(symbol) {
  const row = rowState(symbol);
  const start = encodeURIComponent(marketMidnight().toISOString());
  const [latest, first, metrics, forecast] = await Promise.allSettled([
    api(`bars/${sym(symbol)}?limit=1`),
    api(`bars/${sym(symbol)}?start=${start}&order=asc&limit=1`),
    api(`metrics/${sym(symbol)}?limit=1`),
    api(`forecasts/${sym(symbol)}?target=volatility&model=${encodeURIComponent(VOL_MODEL)}`),
  ]);
  if (latest.status === "fulfilled" && latest.value.bars.length) {
    const b = latest.value.bars[0];
    if (isNum(b.close)) { // a bar of odd lots only has no prices: the last one stays
      row.last = b.close;
      row.lastTime = b.time;
    }
    state.barSeconds = state.barSeconds || b.bar_seconds;
  }
  if (first.status === "fulfilled") {
    const b = first.value.bars[0];
    row.open = b && isNum(b.open) ? b.open : null;
    row.openTime = b && isNum(b.open) ? b.time : null;
  }
  if (metrics.status === "fulfilled" && metrics.value.metrics.length) takeMetrics(row, metrics.value.metrics[0]);
  if (forecast.status === "fulfilled" && forecast.value.forecasts.length) row.fcst = forecast.value.forecasts[0].value;
  if (latest.status === "rejected") reportReadError(latest.reason);
  renderRow(row);
}

function takeMetrics(row, m) {
  row.rv = m.realized_vol_ann;
  row.sharpe = m.sharpe;
  if (isNum(m.realized_vol_ann) && isNum(m.realized_vol) && m.realized_vol > 0) {
    row.annual = m.realized_vol_ann / m.realized_vol;
  } else if (isNum(m.ewma_vol_ann) && isNum(m.ewma_vol) && m.ewma_vol > 0) {
    row.annual = m.ewma_vol_ann / m.ewma_vol;
  }
}

async function loadAlertsToday() {
  const since = encodeURIComponent(marketMidnight().toISOString());
  const alerts = await api(`alerts?since=${since}&limit=500`);
  for (const row of state.tickers.values()) row.alerts = [];
  for (const a of alerts) if (state.tickers.has(a.symbol)) state.tickers.get(a.symbol).alerts.push(a);
  for (const row of state.tickers.values()) renderRow(row);
}

function renderTable() {
  const body = $("tickers").tBodies[0];
  for (const row of [...state.tickers.values()].sort((a, b) => a.symbol.localeCompare(b.symbol))) {
    if (!row.el) row.el = buildRow(row);
    body.append(row.el); // appending an attached row moves it: the order follows the symbols
    renderRow(row);
  }
  $("tickers-empty").hidden = state.tickers.size > 0;
}

function buildRow(row) {
  const tr = document.createElement("tr");
  tr.dataset.symbol = row.symbol;
  const cells = ["symbol", "last", "today", "rv", "fcst", "sharpe", "alerts", "trade"];
  for (const name of cells) {
    const td = document.createElement("td");
    td.dataset.col = name;
    if (!["symbol", "alerts"].includes(name)) td.className = "num";
    tr.append(td);
  }
  const button = document.createElement("button");
  button.type = "button";
  button.className = "sym";
  button.textContent = row.symbol;
  button.setAttribute("aria-label", `Show ${row.symbol}`);
  tr.cells[0].append(button);
  tr.addEventListener("click", () => select(row.symbol));
  return tr;
}

function renderRow(row) {
  const tr = row.el;
  if (!tr) return;
  const cell = (name) => tr.querySelector(`[data-col="${name}"]`);
  tr.setAttribute("aria-selected", String(row.symbol === state.selected));
  cell("last").textContent = price(row.last);
  const change = isNum(row.last) && isNum(row.open) && row.open > 0 ? row.last / row.open - 1 : null;
  const today = cell("today");
  today.textContent = bp(change, 0);
  today.className = `num ${change > 0 ? "up" : change < 0 ? "down" : ""}`;
  today.title = isNum(change) ? `${fixed(row.last - row.open)} (${fixed(change * 100, 2)}%) since ${price(row.open)} at ${marketText(Date.parse(row.openTime))}` : "No trade today yet";
  cell("rv").textContent = pct(row.rv);
  cell("fcst").textContent = isNum(row.fcst) && isNum(row.annual) ? pct(row.fcst * row.annual) : "–";
  cell("sharpe").textContent = fixed(row.sharpe);
  renderBadge(cell("alerts"), row.alerts);
  renderTradeAge(row);
}

const SEVERITY = { info: 0, warning: 1, critical: 2 };
function renderBadge(td, alerts) {
  td.replaceChildren();
  if (!alerts.length) {
    td.textContent = "–";
    return;
  }
  const worst = alerts.reduce((w, a) => ((SEVERITY[a.severity] ?? 0) > (SEVERITY[w.severity] ?? 0) ? a : w), alerts[0]);
  const badge = document.createElement("span");
  badge.className = `badge ${worst.severity}`;
  badge.textContent = String(alerts.length);
  const newest = alerts.reduce((n, a) => (a.time > n.time ? a : n), alerts[0]);
  badge.title = `${alerts.length} alert${alerts.length > 1 ? "s" : ""} today; newest: ${newest.kind}: ${newest.message}`;
  td.append(badge);
}

function tradeLag(symbol) {
  const h = state.health && state.health.symbols.find((s) => s.symbol === symbol);
  if (!h || !isNum(h.tick_lag_s)) return null;
  return h.tick_lag_s + (Date.now() - state.healthAt) / 1000;
}

function renderTradeAge(row) {
  const td = row.el && row.el.querySelector('[data-col="trade"]');
  if (!td) return;
  const lag = tradeLag(row.symbol);
  td.textContent = age(lag);
  td.classList.toggle("stale", isNum(lag) && lag > 60);
}

function dropRow(symbol) {
  const row = state.tickers.get(symbol);
  if (row && row.el) row.el.remove();
  state.tickers.delete(symbol);
  $("tickers-empty").hidden = state.tickers.size > 0;
  if (state.selected === symbol) select(state.tickers.keys().next().value || null);
}

// -- feed state (/health) --------------------------------------------------------------

async function pollHealth() {
  const feed = $("feed");
  try {
    state.health = await api("health");
    state.healthAt = Date.now();
    const feeds = state.health.feeds;
    feed.title = feeds.map((f) => `${f.source} ${f.url || ""}: ${f.connected ? "connected" : "disconnected"}, `
      + `${f.reconnects} reconnects, subscribed to ${f.subscribed.join(", ") || "nothing"}`).join("\n");
    if (!feeds.length) {
      feed.textContent = "feed: none reporting";
      feed.dataset.state = "unknown";
    } else if (state.health.feed_connected) {
      feed.textContent = `feed connected · last trade ${age(state.health.tick_lag_s)} ago`;
      feed.dataset.state = "up";
    } else {
      const down = feeds.find((f) => !f.connected);
      feed.textContent = `feed disconnected${down && down.last_error ? `: ${down.last_error}` : ""}`;
      feed.dataset.state = "down";
    }
  } catch (err) {
    feed.textContent = err.status === 0 ? "API unreachable" : `health: ${err.message}`;
    feed.dataset.state = "down";
  }
  for (const row of state.tickers.values()) renderTradeAge(row);
}

function tick() {
  for (const row of state.tickers.values()) renderTradeAge(row);
  if (state.health && state.health.feed_connected) {
    const lag = state.health.tick_lag_s + (Date.now() - state.healthAt) / 1000;
    $("feed").textContent = `feed connected · last trade ${age(lag)} ago`;
  }
}

// -- the selected ticker -----------------------------------------------------------------

function select(symbol, load = true) {
  state.selected = symbol;
  if (symbol) history.replaceState(null, "", `#${encodeURIComponent(symbol)}`);
  for (const row of state.tickers.values()) renderRow(row);
  $("detail-title").textContent = symbol || "No ticker selected";
  $("extra-title").textContent = symbol ? `${symbol}: models and alerts` : "Models and alerts";
  if (load) loadDetail();
}

function bucketOf(seconds) {
  const size = intervalSeconds(state.interval);
  return size ? Math.floor(seconds / size) * size : seconds;
}

async function loadDetail() {
  const symbol = state.selected;
  const generation = ++state.generation;
  if (!symbol) {
    clearDetail();
    return;
  }
  const market = refreshMarket();
  const q = state.interval ? `&interval=${state.interval}` : "";
  const [bars, metrics, models, alerts] = await Promise.allSettled([
    api(`bars/${sym(symbol)}?limit=${HISTORY_BARS}${q}`),
    api(`metrics/${sym(symbol)}?limit=${HISTORY_BARS}`),
    api(`models/${sym(symbol)}`),
    api(`alerts?symbol=${sym(symbol)}&limit=20`),
  ]);
  if (generation !== state.generation) return;
  const metricRows = metrics.status === "fulfilled" ? metrics.value.metrics.slice().reverse() : [];
  const start = encodeURIComponent(metricRows.length ? metricRows[0].time : new Date(Date.now() - 3600e3).toISOString());
  const [volF, retF] = await Promise.allSettled([
    api(`forecasts/${sym(symbol)}?start=${start}&target=volatility&limit=${HISTORY_BARS * 5}&order=asc`),
    api(`forecasts/${sym(symbol)}?start=${start}&target=return&model=linear&limit=${HISTORY_BARS * 2}&order=asc`),
  ]);
  if (generation !== state.generation) return;
  if (bars.status === "fulfilled") showBars(bars.value.bars.slice().reverse());
  else reportReadError(bars.reason);
  showAnalysis(metricRows, volF.status === "fulfilled" ? volF.value.forecasts : [],
    retF.status === "fulfilled" ? retF.value.forecasts : []);
  if (models.status === "fulfilled") showScores(models.value.models);
  if (alerts.status === "fulfilled") showAlerts(alerts.value);
  const row = state.tickers.get(symbol);
  if (row && metricRows.length) {
    takeMetrics(row, metricRows[metricRows.length - 1]);
    renderRow(row);
  }
  await market;
}

function clearDetail() {
  for (const name of ["candles", "volume", "realized", "volForecast", "volLow", "volHigh", "actual", "retForecast", "retLow", "retHigh"]) {
    if (charts[name]) charts[name].setData([]);
  }
  $("scores").tBodies[0].replaceChildren();
  $("alerts").replaceChildren();
  $("verdict").textContent = "";
  $("detail-price").textContent = "";
  showMarket(null);
  $("daily").tBodies[0].replaceChildren();
  $("daily-empty").hidden = true;
}

function candle(b) {
  return { time: bucketOf(epoch(b.time)), open: b.open, high: b.high, low: b.low, close: b.close, volume: b.volume || 0 };
}
function volumeBar(c) {
  return { time: c.time, value: c.volume, color: c.close >= c.open ? "rgba(38,166,154,.45)" : "rgba(239,83,80,.45)" };
}

function showBars(rows) {
  const candles = rows.filter((b) => isNum(b.open) && isNum(b.close)).map(candle);
  state.candles = candles;
  if (rows.length && !state.interval) state.barSeconds = rows[0].bar_seconds;
  fillIntervals();
  if (charts.candles) {
    charts.candles.setData(candles.map(({ volume, ...c }) => c));
    charts.volume.setData(candles.map(volumeBar));
    charts.price.timeScale().fitContent();
  }
  markBars();
  showPrice();
}

function markBars() {
  const box = $("price-box");
  const last = state.candles && state.candles[state.candles.length - 1];
  box.dataset.bars = String(state.candles ? state.candles.length : 0);
  box.dataset.lastBar = last ? new Date(last.time * 1000).toISOString() : "";
}

function showPrice() {
  const row = state.tickers.get(state.selected);
  const el = $("detail-price");
  if (!row || !isNum(row.last)) {
    el.textContent = "";
    return;
  }
  const change = isNum(row.open) && row.open > 0 ? row.last / row.open - 1 : null;
  el.replaceChildren(`${price(row.last)} `);
  const span = document.createElement("span");
  span.className = change > 0 ? "up" : change < 0 ? "down" : "";
  span.textContent = isNum(change) ? `${fixed(row.last - row.open)} (${bp(change, 0)}) today` : "";
  el.append(span);
}

// Forecast rows -> per-time {forecast value, band low/high} (annualized with `annual`).
function volPoints(forecasts, annual) {
  const byTime = new Map();
  for (const f of forecasts) {
    if (f.horizon !== 1 || !isNum(f.value)) continue;
    const t = epoch(f.time);
    const p = byTime.get(t) || { time: t, values: [] };
    if (f.model === VOL_MODEL) p.forecast = f.value;
    if (isNum(f.lower) && isNum(f.upper) && f.model === VOL_MODEL) p.band = [f.lower, f.upper];
    if (VOL_BAND_MODELS.includes(f.model)) p.values.push(f.value);
    byTime.set(t, p);
  }
  return [...byTime.values()].sort((a, b) => a.time - b.time).map((p) => ({
    time: p.time,
    forecast: isNum(p.forecast) ? p.forecast * annual : null,
    low: (p.band ? p.band[0] : Math.min(...p.values)) * annual,
    high: (p.band ? p.band[1] : Math.max(...p.values)) * annual,
  }));
}

function showAnalysis(metrics, volForecasts, retForecasts) {
  const row = state.tickers.get(state.selected);
  const last = metrics[metrics.length - 1];
  if (row && last) takeMetrics(row, last);
  const annual = row && isNum(row.annual) ? row.annual : null;
  state.annual = annual;
  if (!charts.vol) return;
  const realized = metrics.filter((m) => isNum(m.realized_vol_ann)).map((m) => ({ time: epoch(m.time), value: m.realized_vol_ann }));
  charts.realized.setData(realized);
  const points = annual ? volPoints(volForecasts, annual) : [];
  charts.volForecast.setData(points.filter((p) => isNum(p.forecast)).map((p) => ({ time: p.time, value: p.forecast })));
  charts.volLow.setData(points.filter((p) => isNum(p.low)).map((p) => ({ time: p.time, value: p.low })));
  charts.volHigh.setData(points.filter((p) => isNum(p.high)).map((p) => ({ time: p.time, value: p.high })));
  charts.vol.timeScale().fitContent();

  charts.actual.setData(metrics.filter((m) => isNum(m.log_return)).map(actualBar));
  const rets = retForecasts.filter((f) => f.horizon === 1 && isNum(f.value));
  charts.retForecast.setData(rets.map((f) => ({ time: epoch(f.time), value: f.value * 1e4 })));
  charts.retLow.setData(rets.filter((f) => isNum(f.lower)).map((f) => ({ time: epoch(f.time), value: f.lower * 1e4 })));
  charts.retHigh.setData(rets.filter((f) => isNum(f.upper)).map((f) => ({ time: epoch(f.time), value: f.upper * 1e4 })));
  charts.ret.timeScale().fitContent();
}

function actualBar(m) {
  return { time: epoch(m.time), value: m.log_return * 1e4, color: m.log_return >= 0 ? COLORS.up : COLORS.down };
}

function scoreOf(scores, name, rolling) {
  const v = scores[rolling ? `${name}_rolling` : name];
  return isNum(v) ? v : null;
}

// One cell: the model's standing against its baseline, in words and numbers.
function standing(model, rolling) {
  const s = model.scores;
  if (model.target === "volatility") {
    if (model.model === "ewma") return { text: "baseline", cls: "" };
    const q = scoreOf(s, "qlike_rel_ewma", rolling);
    const m = scoreOf(s, "mse_rel_ewma", rolling);
    if (q === null) return { text: "–", cls: "" };
    const mse = m === null ? "" : ` · MSE ${fixed((m - 1) * 100, 1)}%`;
    return { text: `QLIKE ${fixed(q, 3)}${mse}`, cls: q < 0 ? "win" : "lose", value: q };
  }
  if (model.target === "return") {
    const cov = scoreOf(s, "coverage", rolling);
    const coverage = cov === null ? "" : ` · covered ${pct(cov, 0)}`;
    if (model.model === "zero") return { text: `baseline${coverage}`, cls: "" };
    const r = scoreOf(s, "rmse_rel_zero", rolling);
    const d = scoreOf(s, "direction", rolling);
    if (r === null) return { text: "–", cls: "" };
    const dir = d === null ? "" : ` · sign ${pct(d, 0)}`;
    return { text: `RMSE ${fixed((r - 1) * 100, 1)}%${dir}${coverage}`, cls: r < 1 ? "win" : "lose", value: r };
  }
  return { text: "–", cls: "" };
}

function showScores(models) {
  const body = $("scores").tBodies[0];
  const shown = models.filter((m) => m.target === "volatility" || m.target === "return");
  const order = (m) => (m.target === "volatility" ? 0 : 1) + (["ewma", "zero"].includes(m.model) ? 0.5 : 0);
  body.replaceChildren(...shown.sort((a, b) => order(a) - order(b) || a.model.localeCompare(b.model)).map((m) => {
    const tr = document.createElement("tr");
    const name = document.createElement("td");
    name.textContent = m.model;
    name.title = `${m.target} model`;
    tr.append(name);
    for (const rolling of [true, false]) {
      const td = document.createElement("td");
      const st = standing(m, rolling);
      td.textContent = st.text;
      td.className = st.cls;
      tr.append(td);
    }
    return tr;
  }));
  $("verdict").textContent = verdict(shown);
}

// Who is winning, by how much (last 100 bars).
function verdict(models) {
  const parts = [];
  const vol = models.filter((m) => m.target === "volatility" && m.model !== "ewma")
    .map((m) => ({ m, q: scoreOf(m.scores, "qlike_rel_ewma", true) })).filter((x) => x.q !== null);
  if (vol.length) {
    const best = vol.reduce((b, x) => (x.q < b.q ? x : b));
    parts.push(best.q < 0
      ? `Volatility: ${best.m.model} beats EWMA (QLIKE lower by ${Math.abs(best.q).toFixed(3)}).`
      : `Volatility: EWMA leads; the best model, ${best.m.model}, trails by ${best.q.toFixed(3)} QLIKE.`);
  }
  const ret = models.filter((m) => m.target === "return" && m.model !== "zero")
    .map((m) => ({ m, r: scoreOf(m.scores, "rmse_rel_zero", true) })).filter((x) => x.r !== null);
  if (ret.length) {
    const best = ret.reduce((b, x) => (x.r < b.r ? x : b));
    const by = `${Math.abs((best.r - 1) * 100).toFixed(1)}%`;
    parts.push(best.r < 1
      ? `Returns: ${best.m.model} beats the zero forecast by ${by} RMSE.`
      : `Returns: the zero forecast leads ${best.m.model} by ${by} RMSE.`);
  }
  return parts.join(" ") || "No scores yet: models are scored from their second bar on.";
}

function showAlerts(alerts) {
  const list = $("alerts");
  if (!alerts.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "No alerts.";
    list.replaceChildren(li);
  } else {
    list.replaceChildren(...alerts.slice(0, 20).map(alertItem));
  }
  if (charts.markers) {
    const shown = state.candles && state.candles.length ? state.candles[0].time : 0;
    charts.markers.setMarkers(alerts.filter((a) => epoch(a.time) >= shown).map((a) => ({
      time: bucketOf(epoch(a.time)), position: "aboveBar", shape: "arrowDown",
      color: a.severity === "critical" ? "#ff5c8a" : "#f0b429", text: a.kind.replace("_", " "),
    })).sort((a, b) => a.time - b.time));
  }
  state.alerts = alerts;
}

function alertItem(a) {
  const li = document.createElement("li");
  li.append(timeElement(a.time, fmt.full));
  const badge = document.createElement("span");
  badge.className = `badge ${a.severity}`;
  badge.textContent = a.severity;
  li.append(badge, ` ${a.kind}: ${a.message}`);
  return li;
}

// -- the market and the daily summary (/sessions, /summary) ------------------------------

const DAILY_ROWS = 10;
const HOUR_MS = 3600e3;
const zoneFormats = new Map();
function inZone(zone) {
  if (!zoneFormats.has(zone)) {
    zoneFormats.set(zone, {
      time: dtf({ hour: "2-digit", minute: "2-digit", timeZoneName: "short" }, zone),
      dayTime: dtf({ weekday: "short", hour: "2-digit", minute: "2-digit", timeZoneName: "short" }, zone),
      date: new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" }),
    });
  }
  return zoneFormats.get(zone);
}

// Reads the selected ticker's market and daily summary again: when the market opens or
// closes (a summary is written at the close), and every minute.
async function refreshMarket() {
  const symbol = state.selected;
  if (!symbol) return;
  const generation = state.generation;
  const [sessions, summary] = await Promise.allSettled([
    api(`sessions/${sym(symbol)}`),
    api(`summary/${sym(symbol)}?limit=${DAILY_ROWS}`),
  ]);
  if (generation !== state.generation) return;
  showMarket(sessions.status === "fulfilled" ? sessions.value : null);
  if (summary.status === "fulfilled") showDaily(summary.value.sessions);
}

function showMarket(s) {
  const el = $("market");
  clearTimeout(state.marketTimer);
  state.market = s;
  if (!s) {
    el.dataset.state = "unknown";
    el.dataset.override = "";
    el.replaceChildren();
    el.title = "";
    return;
  }
  const f = inZone(s.time_zone);
  // A time today (in the market's time zone) as 13:00 EDT, another day's as Fri 09:30 EDT.
  const when = (iso) => {
    const ms = Date.parse(iso);
    return (f.date.format(ms) === s.local_date ? f.time : f.dayTime).format(ms);
  };
  const open = s.open_now && s.today;
  el.dataset.state = open ? "open" : "closed";
  el.dataset.calendar = s.calendar;
  const next = open ? `closes ${when(s.today.close)}` : `opens ${when(s.next.open)}`;
  el.replaceChildren(`market ${open ? "open" : "closed"} (${s.calendar}) · ${next}`);
  const override = s.effective_calendar !== s.calendar ? s.effective_calendar : "";
  el.dataset.override = override;
  if (override) {
    const span = document.createElement("span");
    span.className = "override";
    span.textContent = `; demo runs ${override}`;
    span.title = `SENTINEL_CALENDAR_OVERRIDE=${override}: the pipeline treats every symbol as on this calendar`;
    el.append(span);
  }
  const span = (x) => `${when(x.open)} – ${when(x.close)} (${+x.hours.toFixed(2)} h)`;
  const lines = [
    s.today ? `Today's session (${s.today.session_date}): ${span(s.today)}` : `No session today (${s.local_date}): a weekend or a holiday`,
    `Next session (${s.next.session_date}): ${span(s.next)}`,
  ];
  if (s.last_event) lines.push(`The pipeline saw the ${s.last_event.session_date} session ${s.last_event.event} at ${marketText(Date.parse(s.last_event.time))}`);
  el.title = lines.join("\n");
  // Again just after the next open or close, by the server's clock (at most an hour on).
  const change = Date.parse(open ? s.today.close : s.next.open) - Date.parse(s.time);
  state.marketTimer = setTimeout(() => refreshMarket().catch(() => {}), Math.min(Math.max(change, 0) + 2000, HOUR_MS));
}

function showDaily(rows) {
  $("daily").tBodies[0].replaceChildren(...rows.map(dailyRow));
  $("daily").dataset.rows = String(rows.length);
  $("daily-empty").hidden = rows.length > 0;
}

function dailyRow(d) {
  const tr = document.createElement("tr");
  tr.dataset.date = d.session_date;
  const day = isNum(d.open) && isNum(d.close) && d.open > 0 ? d.close / d.open - 1 : null;
  const whole = (v) => (isNum(v) ? v.toLocaleString("en-US", { maximumFractionDigits: 0 }) : "–");
  const cells = [
    ["date", d.session_date], ["open", price(d.open)], ["high", price(d.high)], ["low", price(d.low)],
    ["close", price(d.close)], ["day", bp(day, 0)], ["overnight", bp(d.overnight_return, 0)],
    ["volume", whole(d.volume)], ["vwap", price(d.vwap)], ["trades", whole(d.trades)],
    ["vol", pct(d.realized_vol_ann)], ["sharpe", fixed(d.sharpe)], ["alerts", null],
  ];
  for (const [name, text] of cells) {
    const td = document.createElement("td");
    td.dataset.col = name;
    if (!["date", "alerts"].includes(name)) td.className = "num";
    if (text !== null) td.textContent = text;
    tr.append(td);
  }
  const cell = (name) => tr.querySelector(`[data-col="${name}"]`);
  cell("date").title = `${marketText(Date.parse(d.open_time))} – ${marketText(Date.parse(d.close_time))} · ${d.calendar}`;
  for (const [name, v] of [["day", day], ["overnight", d.overnight_return]]) {
    cell(name).className = `num ${v > 0 ? "up" : v < 0 ? "down" : ""}`;
  }
  const alerts = Object.entries(d.alerts || {}).filter(([, n]) => n > 0);
  const total = alerts.reduce((sum, [, n]) => sum + n, 0);
  if (!total) {
    cell("alerts").textContent = "–";
  } else {
    const badge = document.createElement("span");
    badge.className = "badge warning";
    badge.textContent = String(total);
    badge.title = alerts.map(([kind, n]) => `${kind.replaceAll("_", " ")}: ${n}`).join(", ");
    cell("alerts").append(badge);
  }
  return tr;
}

// -- the form -------------------------------------------------------------------------------

function formMessage(text, kind) {
  const el = $("form-message");
  el.textContent = text;
  el.className = `message ${kind || ""}`;
}

async function changeTicker(action) {
  const input = $("symbol");
  const symbol = input.value.trim();
  if (!symbol) {
    formMessage("Type a symbol first.", "error");
    input.focus();
    return;
  }
  const buttons = [$("add"), $("remove")];
  for (const b of buttons) b.disabled = true;
  try {
    if (action === "add") {
      const t = await api("tickers", { method: "POST", body: { symbol } });
      rowState(t.symbol);
      renderTable();
      refreshRow(t.symbol);
      formMessage(`Following ${t.symbol}: its first bars come with its first trades.`, "ok");
    } else {
      const t = await api(`tickers/${sym(symbol)}`, { method: "DELETE" });
      dropRow(t.symbol);
      formMessage(`Stopped following ${t.symbol} (its history is kept).`, "ok");
    }
    input.value = "";
  } catch (err) {
    formMessage(err.message, "error");
    if (err.status === 401 || err.status === 403) {
      $("key-row").hidden = false;
      $("api-key").focus();
    } else {
      input.focus();
    }
  } finally {
    for (const b of buttons) b.disabled = false;
  }
}

function setUpForm() {
  $("ticker-form").addEventListener("submit", (e) => {
    e.preventDefault();
    changeTicker("add");
  });
  $("remove").addEventListener("click", () => changeTicker("remove"));
  $("key-row").hidden = !config.writeKey;
  $("api-key").value = state.key;
  const useKey = () => {
    state.key = $("api-key").value.trim();
    if (state.key) sessionStorage.setItem(KEY_STORE, state.key);
    else sessionStorage.removeItem(KEY_STORE);
    formMessage(state.key ? "Key kept for this tab." : "Key cleared.", "ok");
    notice("");
    if (config.readKey) restartStream();
    refetchAll();
  };
  $("key-save").addEventListener("click", useKey);
  $("api-key").addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      useKey();
    }
  });
  const select = $("interval");
  select.addEventListener("change", () => {
    state.interval = select.value;
    localStorage.setItem(INTERVAL_STORE, state.interval);
    loadDetail();
  });
  fillIntervals();
}

function fillIntervals() {
  const select = $("interval");
  const bar = state.barSeconds;
  const stored = bar ? `${bar < 60 ? `${bar} s` : bar < 3600 ? `${bar / 60} min` : `${bar / 3600} h`} (stored)` : "stored bars";
  const options = INTERVALS.filter(([v]) => !v || !bar || intervalSeconds(v) > bar);
  if (!options.some(([v]) => v === state.interval)) state.interval = "";
  const wanted = options.map(([v, label]) => `${v}|${v ? label : stored}`).join(",");
  if (select.dataset.options === wanted) return;
  select.replaceChildren(...options.map(([v, label]) => new Option(v ? label : stored, v, false, v === state.interval)));
  select.dataset.options = wanted;
}

// -- live updates ---------------------------------------------------------------------------

function onBar(b) {
  const row = state.tickers.get(b.symbol);
  if (!row) return;
  const priced = isNum(b.open) && isNum(b.close); // price-less bars: volume only
  if (priced && (!row.lastTime || b.time >= row.lastTime)) {
    row.last = b.close;
    row.lastTime = b.time;
  }
  if (priced && (!isNum(row.open) || (row.openTime && b.time < row.openTime))) {
    if (Date.parse(b.time) >= marketMidnight().getTime()) {
      row.open = b.open;
      row.openTime = b.time;
    }
  }
  renderRow(row);
  if (b.symbol !== state.selected || !priced) return;
  showPrice();
  const c = candle(b);
  const candles = state.candles || (state.candles = []);
  const last = candles[candles.length - 1];
  if (last && c.time < last.time) return;
  if (last && c.time === last.time) {
    if (state.interval) {
      last.high = Math.max(last.high, c.high);
      last.low = Math.min(last.low, c.low);
      last.close = c.close;
      last.volume += c.volume;
    } else Object.assign(last, c);
  } else candles.push(c);
  const newest = candles[candles.length - 1];
  if (charts.candles) {
    const { volume, ...ohlc } = newest;
    safeUpdate(charts.candles, ohlc);
    safeUpdate(charts.volume, volumeBar(newest));
  }
  markBars();
  scheduleMetrics(b.symbol);
}

// A bar rewritten by late trades (a backfilled gap, a late print): the chart reads its
// bars back, at most once a second (lightweight-charts updates only its newest bar).
function onBarRevision(b) {
  const symbol = b.symbol;
  if (symbol !== state.selected) return;
  later(`bars:${symbol}`, 1000, async () => {
    const generation = state.generation;
    const q = state.interval ? `&interval=${state.interval}` : "";
    const answer = await api(`bars/${sym(symbol)}?limit=${HISTORY_BARS}${q}`);
    if (generation === state.generation) showBars(answer.bars.slice().reverse());
  });
}

function onForecast(f) {
  const row = state.tickers.get(f.symbol);
  if (!row || f.horizon !== 1) return;
  if (f.target === "volatility" && f.model === VOL_MODEL) {
    row.fcst = f.value;
    renderRow(row);
  }
  if (f.symbol !== state.selected || !charts.vol || !isNum(f.value)) return;
  const t = epoch(f.time);
  if (f.target === "volatility" && state.annual) {
    const pending = state.volPending && state.volPending.time === t ? state.volPending : (state.volPending = { time: t, values: [] });
    if (VOL_BAND_MODELS.includes(f.model)) pending.values.push(f.value);
    if (f.model === VOL_MODEL) safeUpdate(charts.volForecast, { time: t, value: f.value * state.annual });
    if (pending.values.length) {
      safeUpdate(charts.volLow, { time: t, value: Math.min(...pending.values) * state.annual });
      safeUpdate(charts.volHigh, { time: t, value: Math.max(...pending.values) * state.annual });
    }
  } else if (f.target === "return" && f.model === "linear") {
    safeUpdate(charts.retForecast, { time: t, value: f.value * 1e4 });
    if (isNum(f.lower)) safeUpdate(charts.retLow, { time: t, value: f.lower * 1e4 });
    if (isNum(f.upper)) safeUpdate(charts.retHigh, { time: t, value: f.upper * 1e4 });
  }
  scheduleModels();
}

function onAlert(a) {
  const row = state.tickers.get(a.symbol);
  if (row && Date.parse(a.time) >= marketMidnight().getTime()) {
    row.alerts.push(a);
    renderRow(row);
  }
  if (a.symbol === state.selected) showAlerts([a, ...(state.alerts || [])].slice(0, 20));
}

// Metrics and scores are not streamed: read them back shortly after a bar, at most
// once per symbol per second.
const pending = new Map();
function later(key, ms, fn) {
  if (pending.has(key)) return;
  pending.set(key, setTimeout(() => {
    pending.delete(key);
    fn().catch(() => {});
  }, ms));
}

function scheduleMetrics(symbol) {
  later(`metrics:${symbol}`, symbol === state.selected ? 400 : 1500, async () => {
    const selected = symbol === state.selected;
    const generation = state.generation;
    const answer = await api(`metrics/${sym(symbol)}?limit=${selected ? 5 : 1}`);
    const row = state.tickers.get(symbol);
    if (!row || !answer.metrics.length) return;
    takeMetrics(row, answer.metrics[0]);
    renderRow(row);
    if (!selected || generation !== state.generation || !charts.realized) return;
    for (const m of answer.metrics.slice().reverse()) {
      if (isNum(m.realized_vol_ann)) safeUpdate(charts.realized, { time: epoch(m.time), value: m.realized_vol_ann });
      if (isNum(m.log_return)) safeUpdate(charts.actual, actualBar(m));
    }
  });
}

function scheduleModels() {
  const symbol = state.selected;
  later(`models:${symbol}`, 1000, async () => {
    const answer = await api(`models/${sym(symbol)}`);
    if (symbol === state.selected) showScores(answer.models);
  });
}

function setLive(mode) {
  const pill = $("live");
  pill.dataset.state = mode;
  pill.textContent = { live: "live", reconnecting: "reconnecting", offline: "offline", connecting: "connecting" }[mode];
  pill.title = mode === "live" ? "Following /stream" : "Waiting for /stream; the page catches up when it is back";
}

function handle(kind, data) {
  let event;
  try {
    event = JSON.parse(data);
  } catch {
    return;
  }
  if (kind === "bar") onBar(event);
  else if (kind === "bar_revision") onBarRevision(event);
  else if (kind === "forecast") onForecast(event);
  else if (kind === "alert") onAlert(event);
}

function opened() {
  setLive("live");
  if (state.streamOpened) refetchAll(); // what happened while the stream was down
  state.streamOpened = true;
}

const STREAM_KINDS = ["bar", "bar_revision", "forecast", "alert"];
const STREAM_URL = `stream?kinds=${STREAM_KINDS.join(",")}`;
let source = null;
let streamAbort = null;

// EventSource reconnects by itself (the server sends `retry: 3000`); it gives up only
// on an answer that is not an event stream, and then we start a new one.
function connectEventSource() {
  source = new EventSource(STREAM_URL);
  source.onopen = opened;
  source.onerror = () => {
    setLive("reconnecting");
    if (source.readyState === EventSource.CLOSED) {
      source = null;
      setTimeout(connectEventSource, 3000);
    }
  };
  for (const kind of STREAM_KINDS) source.addEventListener(kind, (e) => handle(kind, e.data));
}

// Reads that need the key: EventSource cannot send headers, so read the stream with
// fetch, and retry like EventSource does.
async function connectFetchStream() {
  const controller = new AbortController();
  streamAbort = controller;
  while (!controller.signal.aborted) {
    try {
      const response = await fetch(STREAM_URL, { headers: { Accept: "text/event-stream", "X-API-Key": state.key }, signal: controller.signal });
      if (!response.ok) throw new ApiError(response.status, "stream refused");
      opened();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let kind = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) kind = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (data.length) handle(kind, data.join("\n"));
        }
      }
    } catch (err) {
      if (controller.signal.aborted) return;
      if (err instanceof ApiError && (err.status === 401 || err.status === 403)) reportReadError(new ApiError(err.status, "API key required"));
    }
    setLive("reconnecting");
    await new Promise((resolve) => setTimeout(resolve, 3000));
  }
}

function restartStream() {
  if (streamAbort) streamAbort.abort();
  if (source) source.close();
  state.streamOpened = false;
  connectStream();
}

function connectStream() {
  if (config.readKey) connectFetchStream();
  else connectEventSource();
}

let refetching = null;
function refetchAll() {
  if (refetching) return refetching;
  state.refetches += 1;
  refetching = (async () => {
    try {
      await loadTickers();
      notice("");
      await Promise.all([loadDetail(), pollHealth()]);
    } catch (err) {
      reportReadError(err);
    } finally {
      refetching = null;
      document.body.dataset.refetches = String(state.refetches);
    }
  })();
  return refetching;
}

// -- start ------------------------------------------------------------------------------------

async function main() {
  $("tz").textContent = `${zoneName} (${tz})`;
  $("tz").title = "The time zone of SENTINEL_CALENDAR's market, or SENTINEL_DASHBOARD_TIME_ZONE";
  $("forecast-key").textContent = `forecast (${VOL_MODEL})`;
  $("fcst-head").title = `The ${VOL_MODEL} model's volatility forecast for the next bar, annualized`;
  setUpForm();
  setLive("connecting");
  await setUpCharts();
  if (config.readKey && !state.key) {
    notice("This API needs its key to read: enter it under “Add or remove a ticker”.");
    $("key-row").hidden = false;
  }
  connectStream();
  await refetchAll();
  setInterval(pollHealth, 5000);
  setInterval(() => refreshMarket().catch(() => {}), 60000);
  setInterval(tick, 1000);
  document.body.dataset.ready = "true";
}

main();
