"""The Plateau tab in real headless Chromium, inside a real TensorBoard.

Debian's `/usr/bin/chromium` driven by Playwright (never a downloaded
browser). Screenshots go to `test-artifacts/` for a person to look at.
"""

import json
import os

import pytest

from tests import plugin_logdirs
from tests.tensorboard_server import TensorBoardProcess, get_json

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
ARTIFACTS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test-artifacts"
)
UI_TIMEOUT_MS = 30_000  # the first diagnosis of every run happens on the first /runs

# Runs of `plugin_logdirs.write_hostile_logdir`, written under this folder.
HOSTILE = "hostile"
HTML_RUN = HOSTILE + "/" + plugin_logdirs.HTML_NAMES_RUN
NONFINITE_RUN = HOSTILE + "/" + plugin_logdirs.NONFINITE_RUN
CORRUPT_RUN = HOSTILE + "/" + plugin_logdirs.CORRUPT_RUN

# Anything markup in a name could have created, had it been parsed as HTML.
INJECTED = (
    "() => { const d = document.querySelector('iframe').contentDocument;"
    " const found = [...d.querySelectorAll('img, svg, i, [onerror], [onload]')];"
    " const scripts = [...d.querySelectorAll('script')]"
    "   .filter((s) => !s.src && !s.textContent.startsWith('import(\"./index.js\")'));"
    " return found.concat(scripts).map((n) => n.outerHTML.slice(0, 120)); }"
)


def _torch_runs():
    try:
        import torch  # noqa: F401
    except ImportError:
        return {}
    from tests import torch_training

    return torch_training.EXPECTED


# PyTorch runs (`tests/torch_training.py`) and the root cause each is shown with.
TORCH_RUNS = _torch_runs()


@pytest.fixture(scope="module")
def tensorboard(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        pytest.skip(
            "Debian's chromium is not installed at %s (apt-get install chromium)" % CHROMIUM
        )
    logdir = plugin_logdirs.write_logdir(str(tmp_path_factory.mktemp("logdir")))
    plugin_logdirs.write_hostile_logdir(os.path.join(logdir, HOSTILE))
    expected = set(plugin_logdirs.DIAGNOSABLE_RUNS) | {HTML_RUN, NONFINITE_RUN, CORRUPT_RUN}
    if TORCH_RUNS:
        from tests import torch_training

        for kind in TORCH_RUNS:
            torch_training.train(kind, os.path.join(logdir, "torch", kind))
            expected.add("torch/" + kind)
    process = TensorBoardProcess(logdir, [])
    process.wait_for(
        "/data/plugin/plateau/runs",
        lambda body: {e["run"] for e in body.get("runs", [])} >= expected,
    )
    yield process
    process.stop()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Tab:
    """The TensorBoard page and the Plateau tab's iframe inside it."""

    def __init__(self, browser, tensorboard, width=1280, height=800):
        self.page = browser.new_page(viewport={"width": width, "height": height})
        self.dialogs = []
        self.errors = []
        self.page.on("dialog", self._on_dialog)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(tensorboard.base + "/", timeout=UI_TIMEOUT_MS)
        tab = self.page.locator(".mat-mdc-tab", has_text="Plateau")
        tab.wait_for(timeout=UI_TIMEOUT_MS)
        tab.click()
        self.page.wait_for_selector("iframe", timeout=UI_TIMEOUT_MS)
        self.frame = self.page.frame_locator("iframe")
        self.frame.locator(".pl-run").first.wait_for(timeout=UI_TIMEOUT_MS)

    def _on_dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def run_button(self, run):
        return self.frame.locator(".pl-run").filter(
            has=self.frame.locator(".pl-run-name", has_text=run)
        )

    def select(self, run):
        buttons = self.frame.locator(".pl-run")
        for i in range(buttons.count()):
            if buttons.nth(i).get_attribute("data-run") == run:
                buttons.nth(i).click()
                break
        else:
            raise AssertionError("run %r not in the list" % run)
        self.frame.locator(".pl-run-header").wait_for(timeout=UI_TIMEOUT_MS)
        self.page.wait_for_function(
            "run => { const f = document.querySelector('iframe').contentDocument;"
            " const h = f && f.querySelector('.pl-run-title');"
            " return h && h.textContent === run; }",
            arg=run,
            timeout=UI_TIMEOUT_MS,
        )

    def screenshot(self, name):
        os.makedirs(ARTIFACTS, exist_ok=True)
        path = os.path.join(ARTIFACTS, name)
        self.page.screenshot(path=path)
        return path

    def close(self):
        self.page.close()


@pytest.fixture
def tab(browser, tensorboard):
    opened = Tab(browser, tensorboard)
    yield opened
    opened.close()


def _wait_for_charts(tab, minimum):
    tab.page.wait_for_function(
        "n => { const d = document.querySelector('iframe').contentDocument;"
        " return d && d.querySelectorAll('.pl-chart canvas').length >= n; }",
        arg=minimum,
        timeout=UI_TIMEOUT_MS,
    )


def test_broken_run_shows_finding_cards_and_charts(tab):
    tab.select(plugin_logdirs.BROKEN_RUN)
    cards = tab.frame.locator(".pl-card[data-cause]")
    cards.first.wait_for(timeout=UI_TIMEOUT_MS)
    assert cards.count() >= 1
    assert cards.first.get_attribute("data-cause") in ("dead_relu", "zero_gradient")
    assert tab.frame.locator(".pl-badge-critical").first.is_visible()
    assert cards.first.locator(".pl-card-title").text_content().strip()
    assert cards.first.locator(".pl-explanation").text_content().strip()
    assert cards.first.locator(".pl-fix pre").count() >= 1
    _wait_for_charts(tab, 3)
    # Charts drew something: canvases with a real size.
    sizes = tab.frame.locator(".pl-chart canvas").evaluate_all(
        "cs => cs.map(c => [c.width, c.height])"
    )
    assert all(w > 100 and h > 100 for w, h in sizes), sizes
    # The configuration record is a table (drawn when its fetch returns).
    tab.frame.locator(".pl-config table").first.wait_for(timeout=UI_TIMEOUT_MS)
    tab.screenshot("plateau-broken-run.png")
    tab.frame.locator(".pl-main").evaluate("m => { m.scrollTop = m.scrollHeight / 3; }")
    tab.screenshot("plateau-broken-run-scrolled.png")
    assert tab.errors == []


def _drawn_loss_series(tab):
    """The [run, tag] pairs of the first loss chart on the page."""
    chart = tab.frame.locator(".pl-chart[data-series]").first
    chart.wait_for(timeout=UI_TIMEOUT_MS)
    return json.loads(chart.get_attribute("data-series"))


@pytest.mark.parametrize("run", [plugin_logdirs.BROKEN_RUN, plugin_logdirs.KERAS_TRAIN_RUN])
def test_the_loss_drawn_is_the_loss_diagnosed(tab, tensorboard, run):
    """The chart draws the training and validation curves the report says it read (a Keras
    run's validation curve lives in its sibling run)."""
    status, report = get_json(tensorboard.base + "/data/plugin/plateau/diagnosis?run=" + run)
    assert status == 200
    diagnosed = report["loss_series"]
    tab.select(run)
    drawn = _drawn_loss_series(tab)
    assert drawn[0] == [diagnosed["train"]["run"], diagnosed["train"]["tag"]]
    if diagnosed["validation"] is not None:
        validation = [diagnosed["validation"]["run"], diagnosed["validation"]["tag"]]
        assert validation in drawn[1:]
    if run == plugin_logdirs.KERAS_TRAIN_RUN:
        assert drawn[1] == ["keras/validation", "epoch_loss"]
    assert tab.errors == []


def test_diverging_run_marks_where_it_began(tab):
    tab.select(plugin_logdirs.DIVERGING_RUN)
    tab.frame.locator(".pl-card[data-cause]").first.wait_for(timeout=UI_TIMEOUT_MS)
    causes = tab.frame.locator(".pl-card[data-cause]").evaluate_all(
        "cards => cards.map(c => c.dataset.cause)"
    )
    assert "lr_too_high" in causes or "nonfinite" in causes, causes
    _wait_for_charts(tab, 1)
    tab.screenshot("plateau-diverging-run.png")
    assert tab.errors == []


def test_html_run_name_is_shown_as_text(tab):
    name = tab.run_button(plugin_logdirs.XSS_RUN).locator(".pl-run-name")
    assert name.text_content() == plugin_logdirs.XSS_RUN
    tab.select(plugin_logdirs.XSS_RUN)
    assert tab.frame.locator(".pl-run-title").text_content() == plugin_logdirs.XSS_RUN
    assert tab.frame.locator("img").count() == 0
    tab.page.wait_for_timeout(500)
    tab.screenshot("plateau-html-run-name.png")
    assert tab.dialogs == []
    assert tab.errors == []


def test_filter_and_selection_survive_reload(tab):
    tab.select(plugin_logdirs.BROKEN_RUN)
    tab.frame.locator(".pl-filter").fill("trained")
    visible = tab.frame.locator(".pl-run").evaluate_all("bs => bs.map(b => b.dataset.run)")
    assert visible and all("trained" in run for run in visible)
    # TensorBoard's reload button tells the iframe; the tab refreshes in place.
    tab.page.locator("button.reload-button").click()
    tab.page.wait_for_timeout(1500)
    selected = tab.frame.locator('.pl-run[aria-selected="true"]')
    assert selected.get_attribute("data-run") == plugin_logdirs.BROKEN_RUN
    assert tab.frame.locator(".pl-run-title").text_content() == plugin_logdirs.BROKEN_RUN
    assert tab.frame.locator(".pl-filter").input_value() == "trained"


@pytest.mark.parametrize("width", [1400, 900, 600])
def test_no_horizontal_scroll_at_any_width(browser, tensorboard, width):
    """The run page fits a wide screen, a laptop half-screen and a narrow window; a
    screenshot of each is kept."""
    tab = Tab(browser, tensorboard, width=width, height=900)
    try:
        tab.select(plugin_logdirs.BROKEN_RUN)
        _wait_for_charts(tab, 1)
        overflow = tab.page.evaluate(
            "() => { const d = document.querySelector('iframe').contentDocument.documentElement;"
            " return d.scrollWidth - d.clientWidth; }"
        )
        assert overflow <= 1
        tab.screenshot("plateau-width-%d.png" % width)
    finally:
        tab.close()


def _hover_every_chart(tab):
    """Moves the mouse over each chart so that ECharts draws its HTML tooltips.

    Returns every tooltip text seen (ECharts reuses one tooltip element).
    """
    seen = set()
    charts = tab.frame.locator(".pl-chart")
    for i in range(charts.count()):
        chart = charts.nth(i)
        chart.scroll_into_view_if_needed()
        box = chart.bounding_box()
        if not box:
            continue
        for fx, fy in [(x / 10, y / 10) for x in range(1, 10) for y in (3, 6)]:
            tab.page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
            tab.page.wait_for_timeout(40)
            seen.update(_texts(tab, ".pl-chart div"))
    return seen


def _texts(tab, selector):
    return tab.frame.locator(selector).evaluate_all("ns => ns.map(n => n.textContent)")


def test_markup_in_run_tag_layer_and_function_names_renders_as_text(tab):
    name = tab.run_button(HTML_RUN).locator(".pl-run-name")
    assert name.text_content() == HTML_RUN
    tab.select(HTML_RUN)
    assert tab.frame.locator(".pl-run-title").text_content() == HTML_RUN
    cards = tab.frame.locator(".pl-card[data-cause]")
    cards.first.wait_for(timeout=UI_TIMEOUT_MS)
    # The finding names the layers; they show as the characters they are.
    card_text = " ".join(_texts(tab, ".pl-card[data-cause]"))
    assert "<img src=x onerror=alert(1)>" in card_text or "</div><b>bold</b>" in card_text
    _wait_for_charts(tab, 2)
    # Configuration tables: layer, model, loss and function names as text.
    cells = set(_texts(tab, ".pl-config td")) | set(_texts(tab, ".pl-config th"))
    for layer in plugin_logdirs.HTML_LAYER_NAMES:
        assert any(layer in cell for cell in cells), (layer, sorted(cells)[:40])
    assert any(plugin_logdirs.HTML_FUNCTION_NAME in cell for cell in cells)
    tooltips = _hover_every_chart(tab)
    # A tooltip showed a layer name as the characters it is.
    assert any("<" in text for text in tooltips), sorted(tooltips)
    tab.screenshot("plateau-html-names.png")
    tab.frame.locator(".pl-config table").first.scroll_into_view_if_needed()
    tab.screenshot("plateau-html-names-config.png")
    assert tab.page.evaluate(INJECTED) == []
    assert tab.dialogs == []
    assert tab.errors == []


def test_nonfinite_values_everywhere_draw_without_errors(tab):
    tab.select(NONFINITE_RUN)
    tab.frame.locator(".pl-card[data-cause]").first.wait_for(timeout=UI_TIMEOUT_MS)
    causes = _texts(tab, ".pl-card[data-cause] .pl-card-title")
    assert causes
    _wait_for_charts(tab, 2)
    _hover_every_chart(tab)
    assert tab.page.evaluate(INJECTED) == []
    tab.screenshot("plateau-nonfinite.png")
    assert tab.dialogs == []
    assert tab.errors == []


def test_run_that_could_not_be_fully_read_says_so(tab):
    sub = tab.run_button(CORRUPT_RUN).locator(".pl-run-sub").text_content()
    assert "No problems found" not in sub and "not fully read" in sub.lower(), sub
    tab.select(CORRUPT_RUN)
    problems = tab.frame.locator(".pl-problems")
    problems.wait_for(timeout=UI_TIMEOUT_MS)
    text = problems.text_content()
    assert "could not be read" in text and "events.out.tfevents" in text, text
    assert tab.frame.locator(".pl-card-healthy").count() == 0
    # Other runs are unaffected.
    tab.select(plugin_logdirs.BROKEN_RUN)
    tab.frame.locator(".pl-card[data-cause]").first.wait_for(timeout=UI_TIMEOUT_MS)
    tab.select(CORRUPT_RUN)
    tab.frame.locator(".pl-problems").wait_for(timeout=UI_TIMEOUT_MS)
    tab.screenshot("plateau-not-fully-read.png")
    assert tab.errors == []


@pytest.mark.parametrize("kind", sorted(TORCH_RUNS))
def test_pytorch_runs_show_their_cause_with_pytorch_fixes(tab, kind):
    """PyTorch trainings recorded with `watch`: the right root cause first, its fix in
    PyTorch code; the healthy one with no finding."""
    from tests import torch_training

    run = "torch/" + kind
    tab.select(run)
    cause = TORCH_RUNS[kind]
    if cause is None:
        tab.frame.locator(".pl-healthy-card").wait_for(timeout=UI_TIMEOUT_MS)
        assert tab.frame.locator(".pl-card[data-cause]").count() == 0
    else:
        card = tab.frame.locator(".pl-card[data-cause]").first
        card.wait_for(timeout=UI_TIMEOUT_MS)
        assert card.get_attribute("data-cause") == cause
        fix = card.locator(".pl-fix pre").first.text_content()
        assert torch_training.is_pytorch_fix(fix), fix
        tab.screenshot("plateau-torch-%s.png" % kind)
    assert tab.errors == []
