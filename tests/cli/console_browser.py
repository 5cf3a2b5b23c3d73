# The console, checked from outside: its /v1/ reads against PyIceberg's reading of the same
# tables (exact decimals: JSON numbers parsed as Decimal), requests without the token, and the
# pages in Debian's headless Chromium driven by Selenium (Debian's chromedriver), with a
# screenshot of each page. Prints what it found as JSON for the Rust test to assert.
import json, os, sys, urllib.error, urllib.request
from decimal import Decimal

base, token, spec, shots, run_id, lineage_file = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
from urllib.parse import quote
os.makedirs(shots, exist_ok=True)
out = {}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def get(path, bearer=None):
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    opener = urllib.request.build_opener(NoRedirect)
    try:
        r = opener.open(urllib.request.Request(base + path, headers=headers))
        return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def api(path):
    status, _, body = get(path, token)
    assert status == 200, (path, status, body)
    return json.loads(body, parse_float=Decimal)


# Without the token: JSON is refused, a page sends the browser to the login form.
out["without_token"] = {p: get(p)[0] for p in ["/v1/candles?symbol=BTC-USD", "/v1/tables", "/v1/schedules", "/markets", "/runs"]}
out["wrong_token"] = get("/v1/tables", "not-the-token-at-all")[0]
out["login_redirect"] = get("/tables")[1].get("location")

# The candles, as PyIceberg reads them.
from pyiceberg.catalog.sql import SqlCatalog
catalog = SqlCatalog("cryptolake", uri=f"sqlite:///{spec['db']}", warehouse=f"file://{spec['warehouse']}")
cols = ["window_start", "window_end", "open", "high", "low", "close", "volume", "vwap", "quote_count", "trade_count"]


def text(v):
    if isinstance(v, Decimal):
        return format(v, "f")
    if hasattr(v, "isoformat"):
        return v.isoformat() + "Z"
    return v


def reference(table, symbol):
    t = catalog.load_table(table).scan(row_filter=f"symbol == '{symbol}'").to_arrow().sort_by("window_start")
    return [{c: text(t.column(c)[i].as_py()) for c in cols} for i in range(t.num_rows)]


def served(rows):
    return [{c: text(r[c]) for c in cols} for r in rows]


minutes = reference("gold.candles_1m", "BTC-USD")
out["candles_1m"] = len(minutes)
out["candles_1m_equal"] = served(api("/v1/candles?symbol=BTC-USD&interval=1m")) == minutes
hours = reference("gold.candles_1h", "BTC-USD")
out["candles_1h"] = len(hours)
out["candles_1h_equal"] = served(api("/v1/candles?symbol=BTC-USD&interval=1h")) == hours
# A range: [second minute, fourth minute) is the second and third candle.
frm, to = minutes[1]["window_start"], minutes[3]["window_start"]
ranged = api(f"/v1/candles?symbol=BTC-USD&interval=1m&from={frm}&to={to}")
out["ranged"] = [r["window_start"] for r in ranged] == [minutes[1]["window_start"], minutes[2]["window_start"]]
out["newest_two"] = [r["window_start"] for r in api("/v1/candles?symbol=BTC-USD&limit=2")] == [m["window_start"] for m in minutes[-2:]]
out["bad_interval"] = get("/v1/candles?symbol=BTC-USD&interval=5m", token)[0]
out["unknown_symbol"] = api("/v1/candles?symbol=NOPE-USD")
out["tables"] = {t["table"]: t["records"] for t in api("/v1/tables")}
out["alerts"] = api("/v1/alerts")
history = api("/v1/market-snapshot/history")
out["history_source"] = history[0]["source"] if history else None
out["history_rows"] = len(history)
out["history_symbols"] = len({r["symbol"] for r in history})
detail = api("/v1/tables/silver.quotes")
out["detail_findings"] = detail["findings"]
out["detail_quarantine"] = [[r["source"], r["reason"], r["records"]] for r in detail["quarantine"]]
out["detail_small_files"] = detail["small_files"]
out["detail_unknown"] = get("/v1/tables/silver.nope", token)[0]
lineage = api(f"/v1/lineage?source=coinbase_spot&file={quote(lineage_file)}")
out["lineage"] = {k: lineage[k] for k in ["bronze_rows", "silver", "quarantined", "duplicates", "pending"]}

# The metrics, read by an independent parser.
from prometheus_client.parser import text_string_to_metric_families
status, headers, body = get("/metrics", token)
assert status == 200, (status, body)
out["metrics_content_type"] = headers.get("Content-Type")
out["metrics_without_token"] = get("/metrics")[0]
out["metrics"] = [[s.name, s.labels, s.value] for f in text_string_to_metric_families(body) for s in f.samples]

# The pages, in a real browser.
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait


def wait_for(by, selector):
    """The element once the page a click started has loaded (a click does not wait for it)."""
    return WebDriverWait(driver, 60).until(expected_conditions.presence_of_element_located((by, selector)))

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1800"]:
    options.add_argument(arg)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
try:
    driver.get(base + "/markets?symbol=BTC-USD")
    out["browser_sent_to"] = driver.current_url.removeprefix(base).split("?")[0]
    driver.find_element(By.ID, "token").send_keys("wrong-token-0123456789")
    driver.find_element(By.ID, "login").click()
    out["wrong_login_says"] = wait_for(By.ID, "login-error").text
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "login").click()
    first = minutes[0]["window_start"]
    row = wait_for(By.CSS_SELECTOR, f"#candles tr[data-window='{first}']")
    out["after_login"] = driver.current_url.removeprefix(base)
    out["markets_row"] = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
    out["markets_expected"] = [first] + [minutes[0][c] for c in ["open", "high", "low", "close", "volume", "vwap"]] + [str(minutes[0]["quote_count"]), str(minutes[0]["trade_count"])]
    out["chart_bodies"] = len(driver.find_elements(By.CSS_SELECTOR, "#candle-chart svg rect"))
    out["snapshot_rows"] = len(driver.find_elements(By.CSS_SELECTOR, "#snapshot tr")) - 1
    # The asset lines and their legend entries: the polylines in the palette's colours (the
    # axes and ticks are polylines too, in black).
    palette = {"#2563EB", "#EA580C", "#16A34A", "#9333EA", "#DC2626", "#64748B"}
    out["dominance_lines"] = sum(1 for e in driver.find_elements(By.CSS_SELECTOR, "#dominance-chart svg polyline") if e.get_attribute("stroke") in palette)
    out["position_rows"] = len(driver.find_elements(By.CSS_SELECTOR, "#positions tr")) - 1
    out["alert_rows"] = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")] for tr in driver.find_elements(By.CSS_SELECTOR, "#alerts tr")][1:]
    driver.save_screenshot(f"{shots}/markets.png")
    driver.get(base + "/runs")
    row = driver.find_element(By.ID, f"run-{run_id}")
    out["runs_row"] = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
    out["schedules"] = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#schedules td")][:4]
    # The timeline: one green bar per run that succeeded.
    out["timeline_succeeded"] = len(driver.find_elements(By.CSS_SELECTOR, "#runs-chart svg rect[fill='#16A34A']"))
    driver.save_screenshot(f"{shots}/runs.png")
    driver.get(f"{base}/runs/{run_id}")
    out["run_state"] = driver.find_element(By.ID, "run-state").text
    driver.save_screenshot(f"{shots}/run.png")
    driver.get(base + "/tables")
    row = driver.find_element(By.CSS_SELECTOR, "[id='table-gold.candles_1m']")
    out["tables_row"] = [td.text for td in row.find_elements(By.TAG_NAME, "td")][:4]
    driver.save_screenshot(f"{shots}/tables.png")
    driver.get(base + "/tables/silver.quotes")
    out["table_snapshots"] = len(driver.find_elements(By.CSS_SELECTOR, "#snapshots tr")) - 1
    out["table_chart"] = len(driver.find_elements(By.CSS_SELECTOR, "#files-chart svg"))
    out["table_check"] = driver.find_element(By.ID, "check").text
    out["table_small_files"] = driver.find_element(By.ID, "small-files").text
    out["table_quarantine"] = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")] for tr in driver.find_elements(By.CSS_SELECTOR, "#quarantine tr")][1:]
    driver.save_screenshot(f"{shots}/table.png")
    driver.get(f"{base}/lineage?source=coinbase_spot&file={quote(lineage_file)}")
    out["lineage_counts"] = driver.find_element(By.ID, "lineage-counts").text
    out["lineage_rows"] = len(driver.find_elements(By.CSS_SELECTOR, "#lineage tr")) - 1
    driver.save_screenshot(f"{shots}/lineage.png")
    driver.get(base + "/logout")
    driver.get(base + "/runs")
    out["after_logout"] = driver.current_url.removeprefix(base).split("?")[0]
finally:
    driver.quit()
print(json.dumps(out, default=str))
