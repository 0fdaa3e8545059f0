"""The pre-grouping page in headless Chromium (Debian's package): load it from the real server, search a
code, fill a case, and check the group, payment and what-if suggestions it shows."""
from __future__ import annotations

import json

import pytest
from headless import Page, chromium_path
from test_serve import CASE, POLICIES, running_server

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed (apt-get install chromium)")

FILL = """
(async () => {
  const set = (id, value) => { const el = document.getElementById(id); el.value = value; };
  set("dx", "J80.x00\\nJ96.000"); set("proc", "39.6500|38.9300"); set("sex", "1"); set("age", "67");
  set("los", "21"); set("discharge", "1"); set("dept", "ICU"); set("hospital_level", "3"); set("cost", "12000");
  set("candidates", "dx:A41.900");
  document.getElementById("submit").click();
  for (let i = 0; i < 300 && !document.getElementById("group") && !document.getElementById("error"); i++)
    await new Promise((r) => setTimeout(r, 100));
  const text = (id) => (document.getElementById(id) || {}).textContent;
  const rows = [...document.querySelectorAll("#suggestions tr")].slice(1).map((tr) => [tr.cells[0].querySelector("code").textContent, ...[...tr.cells].slice(1).map((c) => c.textContent), tr.cells[0].querySelector("span").textContent]);
  return JSON.stringify({group: text("group"), weight: text("rw"), payment: text("payment"), error: text("error"),
                         estimate: text("estimate"), rows, path: document.querySelectorAll("ul.path li.held").length});
})()
"""

SEARCH = """
(async () => {
  const box = document.getElementById("search");
  box.value = "肺炎"; box.dispatchEvent(new Event("input"));
  for (let i = 0; i < 100 && !document.querySelector("#search-results li"); i++) await new Promise((r) => setTimeout(r, 100));
  const first = document.querySelector("#search-results li");
  const code = first.querySelector("code").textContent, name = first.children[1].textContent;
  document.getElementById("dx").value = "";
  first.querySelector("button").click();
  return JSON.stringify({code, name, dx: document.getElementById("dx").value});
})()
"""


def test_page_groups_a_case_and_shows_suggestions(tmp_path):
    with running_server(tmp_path, "--policy", str(POLICIES / "zhejiang-points.toml"), "--point-value", "9.5") as server:
        expected = server.post("/v1/group", {**CASE, "cost": "12000"})[2]
        recommended = server.post("/v1/recommend", {"case": CASE, "candidates": {"dx": ["A41.900"]}})[2]
        with Page(server.base + "/") as page:
            assert page.evaluate("document.documentElement.lang") == "zh-CN"
            assert "预分组" in page.evaluate("document.title")
            shown = json.loads(page.evaluate(FILL))
            assert shown.get("error") is None, shown
            assert shown["group"] == expected["drg"] == "AH11"
            assert shown["weight"] == "8.7"
            assert shown["payment"] == expected["estimate"]["payment"] + " 元"
            assert "费用" in shown["estimate"]
            assert [row[0] for row in shown["rows"]] == [s["changes"] for s in recommended["suggestions"]]
            assert any(row[0] == "-dx:J96.000" and row[-1] == "删除诊断 J96.000" for row in shown["rows"])
            assert shown["path"] >= 3   # MDC, ADRG and DRG steps that held
            found = json.loads(page.evaluate(SEARCH))
            assert "肺炎" in found["name"] and found["dx"] == found["code"]
            assert page.errors == []
