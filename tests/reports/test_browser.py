"""The report in a real browser (Debian's chromium, headless) with every network request blocked."""

from __future__ import annotations

import json
import shutil

import pytest

from specc.reports.render import render_report

pytestmark = pytest.mark.browser

# data marks vega drew as SVG (axes and legends have other roles)
MARKS = "g.role-mark path, g.role-mark line, g.role-mark rect"
XSS = "<script>alert(1)</script>"


def _chart_marks(page) -> dict[str, tuple[str, int]]:
    return page.evaluate(f"""() => Object.fromEntries(Array.from(document.querySelectorAll('.chart')).map(el =>
        [el.closest('.figure').dataset.name, [el.dataset.rendered, el.querySelectorAll('{MARKS}').length]]))""")


def test_quickstart_report_draws_every_figure_offline(quickstart_report, offline_page):
    view = offline_page(quickstart_report)
    page = view.open()
    marks = _chart_marks(page)
    assert len(marks) >= 5, f"expected the quickstart's figures, got {sorted(marks)}"
    for name, (rendered, count) in marks.items():
        assert rendered == "yes", f"figure {name} did not render"
        assert count > 0, f"figure {name} drew no marks"
    assert view.errors == [], view.errors
    assert view.network_requests == [], f"the report tried the network: {view.network_requests}"
    assert page.locator("#findings tr").count() > 1


def test_charts_have_tooltips(quickstart_report, offline_page):
    view = offline_page(quickstart_report)
    page = view.open()
    symbol = page.locator('.figure[data-name="kl_vs_winrate"] g.mark-symbol.role-mark path').first
    symbol.hover(force=True)
    tooltip = page.locator("#vg-tooltip-element")
    tooltip.wait_for(state="visible", timeout=60_000)
    assert "win_rate" in tooltip.inner_text()
    assert view.errors == []


def test_script_in_a_prompt_shows_as_text(quickstart_workspace, offline_page, tmp_path):
    """A dataset example whose prompt is a script tag is shown as text, runs nothing, and is
    escaped in the HTML; a stage-like string with </script> in chart data cannot break out."""
    workspace = tmp_path / "runs"
    shutil.copytree(quickstart_workspace, workspace, ignore=shutil.ignore_patterns("checkpoint*", "*.safetensors"))
    examples = sorted(workspace.glob("jobs/*/artifacts/examples.json"))
    assert examples, "the quickstart's dataset job wrote no examples.json"
    examples[0].write_text(json.dumps({"examples": [
        {"prompt": XSS, "chosen": "<img src=x onerror=alert(2)>", "rejected": "</script><script>alert(3)</script>"}]}))
    custom = {"evil": {"title": "</script><script>alert(4)</script>", "mark": "bar", "x": "label", "y": "n",
                       "sql": "SELECT '</script><script>alert(5)</script>' AS label, count(*) AS n FROM runs "
                              "WHERE spec_name = ?"}}
    output = render_report(workspace, "quickstart", tmp_path / "report.html", custom=custom)
    html = output.read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert XSS not in html and "<img src=x" not in html and "alert(3)</script>" not in html
    assert html.count("<script>alert") == 0

    view = offline_page(output)
    page = view.open()
    assert view.dialogs == [], f"a script from the data ran: {view.dialogs}"
    assert page.get_by_text(XSS, exact=True).count() == 1
    marks = _chart_marks(page)
    assert marks["evil"][0] == "yes" and marks["evil"][1] > 0
    assert view.errors == [] and view.network_requests == []


def test_the_harness_sees_network_attempts(offline_page, tmp_path):
    """The no-network assertion above means something: a page that reaches out is caught."""
    page_file = tmp_path / "leaky.html"
    page_file.write_text('<html><body><div class="chart" data-rendered="yes"></div>'
                         '<img src="http://192.0.2.1/pixel.png"><script>fetch("https://example.invalid/x")'
                         '.catch(function () {});</script></body></html>')
    view = offline_page(page_file)
    view.open()
    view.page.wait_for_timeout(300)
    assert any("192.0.2.1" in url for url in view.network_requests)
    assert any("example.invalid" in url for url in view.network_requests)


def test_every_builtin_figure_draws_on_the_full_design(offline_page, full_design_workspace, tmp_path):
    """The benchmark's synthetic store has every method, two losses, three sizes, two datasets and
    three shuffle levels: every built-in figure has data and must draw."""
    from specc.reports.figures import FIGURES

    workspace, spec = full_design_workspace
    output = render_report(workspace, spec, tmp_path / "full.html")
    view = offline_page(output)
    marks = _chart_marks(view.open())
    assert sorted(marks) == sorted(f.name for f in FIGURES)
    assert all(rendered == "yes" and count > 0 for rendered, count in marks.values()), marks
    assert view.errors == [] and view.network_requests == []
