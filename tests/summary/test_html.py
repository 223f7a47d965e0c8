"""``npresnet summary --html``: the page's table read back equals ``summarize()``, with and without a browser.

The structural tests parse the page with the standard library's HTML parser. The browser test
loads it in headless Chromium (Debian's ``chromium-headless-shell``, or ``chromium``), reads the
table back from the DOM the browser built, checks the browser logged no console message (the
page has no script; a planted page proves the log is read), and saves a screenshot. It is
skipped, saying why, where no such browser is installed.
"""

import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from npresnet.cli import main
from npresnet.summary import format_html, summarize

SCALES = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}


class TableReader(HTMLParser):
    """The rows of ``<table id="layers">``: (attributes of the ``tr``, texts of its cells); bar values by chart."""

    def __init__(self):
        super().__init__()
        self.rows, self.bars, self.tags = [], {}, []
        self._in_table = self._cell = False
        self._chart = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "table" and attrs.get("id") == "layers":
            self._in_table = True
        elif self._in_table and tag == "tr" and "data-name" in attrs:
            self.rows.append((attrs, []))
        elif self._in_table and tag == "td" and self.rows:
            self._cell = True
            self.rows[-1][1].append("")
        elif tag == "svg" and attrs.get("id") in ("params-per-stage", "macs-per-stage"):
            self._chart = attrs["id"]
            self.bars[self._chart] = []
        elif tag == "rect" and self._chart:
            self.bars[self._chart].append(int(attrs["data-value"]))

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = False
        elif tag == "td":
            self._cell = False
        elif tag == "svg":  # the charts hold no nested svg
            self._chart = None

    def handle_data(self, data):
        if self._cell:
            self.rows[-1][1][-1] += data


def read(page):
    reader = TableReader()
    reader.feed(page)
    return reader


def assert_table_is_the_summary(rows, summary):
    """Every row's exact numbers and its visible text against the Summary's LayerRow."""
    assert len(rows) == len(summary.layers)
    for (attrs, cells), row in zip(rows, summary.layers):
        rf = row.receptive_field
        assert attrs["data-name"] == row.name == cells[0]
        assert tuple(int(v) for v in attrs["data-shape"].split(",")) == row.output_shape
        assert int(attrs["data-params"]) == row.params and int(attrs["data-macs"]) == row.macs
        assert attrs["data-rf-size"] == f"{rf.size[0]},{rf.size[1]}"
        assert attrs["data-rf-jump"] == f"{rf.jump[0]},{rf.jump[1]}"
        # visible text: shape, exact parameters, MACs to the 3 significant digits shown, field size / jump
        shape = tuple(int(v) for v in re.split("[@×]", cells[2]))
        assert shape == row.output_shape
        assert (0 if cells[3] == "–" else int(cells[3].replace(",", ""))) == row.params
        if cells[4] == "–":
            assert row.macs == 0
        else:
            value, unit = cells[4].split()
            assert abs(float(value) * SCALES[unit] - row.macs) <= 0.005 * SCALES[unit]
        assert cells[5] == f"{rf.size[0]} / {rf.jump[0]}"  # square inputs below: one number per axis


CASES = [("resnet18", 224, None), ("resnet50", 160, 2), ("resnext50_32x4d", 96, 3), ("resnet34", 64, 0)]


@pytest.mark.parametrize("arch,size,depth", CASES)
def test_page_table_is_summarize(arch, size, depth):
    summary = summarize(arch, size, depth=depth)
    page = read(format_html(summary))
    assert_table_is_the_summary(page.rows, summary)
    # the per-stage bars add up to the totals
    assert sum(page.bars["params-per-stage"]) == summary.total_params
    assert sum(page.bars["macs-per-stage"]) == summary.total_macs


def test_page_is_self_contained():
    text = format_html(summarize("resnet18"))
    assert text.startswith("<!DOCTYPE html>")
    for tag, attrs in read(text).tags:
        assert tag not in ("script", "link", "img", "iframe", "object", "embed"), tag
        for key, value in attrs.items():
            assert key not in ("src", "href") and "url(" not in (value or ""), (tag, key, value)
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in text


def test_cli_writes_the_page(tmp_path, capsys):
    out = tmp_path / "summary.html"
    assert main(["summary", "resnet50", "--depth", "2", "--html", str(out)]) == 0
    assert capsys.readouterr().out == ""
    assert out.read_text(encoding="utf-8") == format_html(summarize("resnet50", depth=2))
    assert main(["summary", "resnet50", "--html", str(tmp_path / "missing" / "s.html")]) == 1
    assert f"--html {tmp_path / 'missing' / 's.html'}: no such directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.html"]


def _browser():
    return shutil.which("chromium-headless-shell") or shutil.which("chromium")


def _load(browser, path, *extra):
    """Run the browser on ``path``: (stdout, the console messages it logged)."""
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0", *extra,
         path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.skipif(_browser() is None, reason="no headless Chromium (apt-get install chromium-headless-shell)")
def test_page_in_a_real_browser(tmp_path):
    browser = _browser()
    planted = tmp_path / "planted.html"
    planted.write_text("<!DOCTYPE html><html><body><script>console.error('planted')</script></body></html>")
    assert any("planted" in line for line in _load(browser, planted, "--dump-dom")[1])  # the log is read

    summary = summarize("resnet18", 224)
    page = tmp_path / "summary.html"
    page.write_text(format_html(summary), encoding="utf-8")
    dom, console = _load(browser, page, "--dump-dom")
    assert console == []
    assert_table_is_the_summary(read(dom).rows, summary)

    shot = tmp_path / "summary.png"
    _load(browser, page, f"--screenshot={shot}", "--window-size=1000,1400")
    PIL = pytest.importorskip("PIL.Image")
    with PIL.open(shot) as im:
        assert im.size == (1000, 1400)
        assert len(im.convert("L").getcolors(maxcolors=1 << 16) or range(257)) > 16  # something was drawn


def test_cli_help_names_the_page(capsys):
    with pytest.raises(SystemExit):
        main(["summary", "--help"])
    assert "self-contained HTML page" in " ".join(capsys.readouterr().out.split())
