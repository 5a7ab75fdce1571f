"""The viewer as people use it: JupyterLab on 127.0.0.1, driven in Debian's Chromium by selenium.

A notebook shows a :class:`cellnb.viewer.Viewer` of a synthetic pair; the test
clicks a cell, zooms with the wheel, hides a layer and drags a box in the real
browser, and reads what the kernel received from a file the notebook's
callbacks write. Needs ``chromium`` and ``chromedriver`` (Debian packages
``chromium chromium-driver``; ``make test`` installs them when run as root).
"""

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import nbformat
import numpy as np
import pytest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:
    pytest.skip("needs Debian's chromium and chromedriver (apt-get install chromium "
                "chromium-driver)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver")
pytest.importorskip("jupyterlab")

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from cellnb.data import synthetic_pairs  # noqa: E402

SIZE = 256
ACTIVE = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook tab on show
NOTEBOOK = f"""
import json
from cellnb.data import synthetic_pairs
from cellnb.viewer import Viewer

pair = synthetic_pairs(1, shape=({SIZE}, {SIZE}), n_cells=6, seed=0)[0]
viewer = Viewer(height=480)
viewer.add_image(pair.tl, name="TL")
viewer.add_image(pair.fluorescence, name="H2B", color="magenta", opacity=0.8)
viewer.add_labels(pair.labels, name="cells")

def log(event):
    with open("events.jsonl", "a") as f:
        f.write(json.dumps(event) + "\\n")

viewer.on_click(log)
viewer.on_box(log)
viewer.on_stroke(lambda e: log({{"event": "stroke", "n": len(e["points"]), "erase": e["erase"],
                                 "area": int(e["mask"].sum())}}))
viewer.observe(lambda c: log({{"event": "view", **c["new"]}}), names="view")
viewer.observe(lambda c: log({{"event": "layers", "visible": [l["visible"] for l in c["new"]],
                              "opacity": [l.get("opacity") for l in c["new"]]}}),
               names="layers")
viewer
"""


def _write_notebook(code: str, path) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code.strip())])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab serving a folder with the viewer notebook, on 127.0.0.1 only; stopped after."""
    folder = tmp_path_factory.mktemp("lab")
    _write_notebook(NOTEBOOK, folder / "viewer.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(folder / ".jupyter"),
               JUPYTER_RUNTIME_DIR=str(folder / ".runtime"),
               JUPYTERLAB_WORKSPACES_DIR=str(folder / ".workspaces"))
    env.pop("MPLBACKEND", None)
    log = open(folder / "lab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={folder}", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
         "jupyterlab.NeverCheckForUpdate", *(["--allow-root"] if os.geteuid() == 0 else [])],
        cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("JupyterLab did not start:\n"
                                       + (folder / "lab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield base, token, folder
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1400,1100", "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    yield driver
    driver.quit()


def _events(folder, kind):
    path = folder / "events.jsonl"
    if not path.exists():
        return []
    return [e for e in map(json.loads, path.read_text().splitlines()) if e["event"] == kind]


def _wait_for(folder, kind, predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in _events(folder, kind) if predicate(e)]
        if found:
            return found[-1]
        time.sleep(0.2)
    raise AssertionError(f"no {kind!r} event as expected reached the kernel; got "
                         f"{_events(folder, kind)}")


@contextlib.contextmanager
def _screenshot_on_failure(browser, folder):
    """Keep what the browser showed when a step failed, beside JupyterLab's log."""
    try:
        yield
    except Exception:
        browser.save_screenshot(str(folder / "failure.png"))
        print(f"browser screenshot: {folder / 'failure.png'}; JupyterLab log: {folder / 'lab.log'}")
        raise


def _run_first_cell(browser, wait):
    """Click into the notebook's first cell and shift-enter, as a user does, until it runs.

    A keystroke sent before the notebook's kernel is connected is lost, so it is
    sent again until the cell's prompt shows it queued or run.
    """
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, f"{ACTIVE} .jp-Cell")))
    prompt = f"{ACTIVE} .jp-Cell .jp-InputPrompt"
    for _ in range(20):
        editor = wait.until(EC.element_to_be_clickable(
            (By.CSS_SELECTOR, f"{ACTIVE} .jp-Cell .cm-content")))
        editor.click()
        ActionChains(browser).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(
            Keys.SHIFT).perform()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            text = browser.find_element(By.CSS_SELECTOR, prompt).text
            if "*" in text or any(ch.isdigit() for ch in text):
                return
            time.sleep(0.25)
    raise AssertionError("the notebook's cell never ran")


def _open_and_run(browser, url, timeout=120):
    """Open a notebook, run its cell, wait for the viewer; (canvas, width, height) on screen."""
    browser.get(url)
    wait = WebDriverWait(browser, timeout)
    _run_first_cell(browser, wait)
    canvas = wait.until(EC.presence_of_element_located(
        (By.CSS_SELECTOR, f"{ACTIVE} .cellnb-viewer canvas")))
    # the rasters arrive after the view announces itself; wait until the status line is drawn
    wait.until(lambda d: "zoom" in d.find_element(
        By.CSS_SELECTOR, f"{ACTIVE} .cellnb-viewer-status").text)
    # whole canvas on screen: selenium's element offsets count from its visible part's centre
    width, height, top, bottom = browser.execute_script(
        "const c = arguments[0]; c.scrollIntoView({block: 'center'});"
        "const r = c.getBoundingClientRect(); return [r.width, r.height, r.top, r.bottom];",
        canvas)
    assert 0 <= top and bottom <= browser.execute_script("return window.innerHeight;")
    # the widget fits the notebook column: its output area never scrolls sideways
    overflow = browser.execute_script(
        "const o = arguments[0].closest('.jp-OutputArea-output');"
        "return o.scrollWidth - o.clientWidth;", canvas)
    assert overflow <= 1, f"the widget is {overflow} px wider than the notebook column"
    return canvas, width, height


def test_viewer_in_jupyterlab_sends_clicks_zoom_layers_and_boxes(lab, browser):
    base, token, folder = lab
    with _screenshot_on_failure(browser, folder):
        _drive(browser, base, token, folder)


def _drive(browser, base, token, folder):
    url = f"{base}/lab/tree/viewer.ipynb?reset&token={token}"
    canvas, width, height = _open_and_run(browser, url)
    assert width > 100 and height > 100
    # the layout fits the column: the viewer is no wider than the cell's output area
    overflow = browser.execute_script(
        f"const v = document.querySelector('{ACTIVE} .cellnb-viewer');"
        "const o = v.closest('.jp-OutputArea-output');"
        "return v.scrollWidth - o.clientWidth;")
    assert overflow <= 1
    scale = min(width / SIZE, height / SIZE)

    def offset(y, x):  # selenium offsets are from the element's centre
        return round((x - SIZE / 2) * scale), round((y - SIZE / 2) * scale)

    viewer = f"{ACTIVE} .cellnb-viewer"
    # 0. keys: with the pointer over the image (nothing clicked, the canvas unfocused) the
    # viewer's keys act on the viewer and never on the notebook; away from it, the notebook
    # has its keys again (issue 34: `0 0` opened "Restart kernel?", `b` inserted a cell)
    _keys_reach_the_viewer_only_while_pointed_at(browser, canvas, viewer)

    # 1. click the middle of a cell: the kernel learns which cell
    pair = synthetic_pairs(1, shape=(SIZE, SIZE), n_cells=6, seed=0)[0]
    from scipy import ndimage

    label = int(pair.labels.max())
    dist = ndimage.distance_transform_edt(pair.labels == label)
    y, x = np.unravel_index(np.argmax(dist), dist.shape)
    ActionChains(browser).move_to_element_with_offset(canvas, *offset(y, x)).click().perform()
    click = _wait_for(folder, "click", lambda e: True)
    assert click["labels"]["cells"] == label and not click["shift"], (click, y, x, scale)
    assert abs(click["y"] - y) < 2 and abs(click["x"] - x) < 2

    # 2. shift-click on background
    by, bx = np.argwhere(ndimage.binary_erosion(pair.labels == 0, iterations=6))[0]
    ActionChains(browser).key_down(Keys.SHIFT).move_to_element_with_offset(
        canvas, *offset(by, bx)).click().key_up(Keys.SHIFT).perform()
    shift = _wait_for(folder, "click", lambda e: e["shift"])
    assert shift["labels"]["cells"] == 0

    # 3. the wheel zooms in about the pointer; the kernel's view follows
    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(canvas), 0, -600).perform()
    # (the wheel zooms 3.3x; the `+` of step 0 zoomed 2x)
    zoomed = _wait_for(folder, "view", lambda e: e.get("scale", 0) > scale * 2.5)
    assert 0 <= zoomed["cy"] <= SIZE and 0 <= zoomed["cx"] <= SIZE

    # 4. hiding a layer from its checkbox
    browser.find_element(By.CSS_SELECTOR, f"{viewer} input[data-layer='cells']").click()
    _wait_for(folder, "layers", lambda e: e["visible"] == [True, True, False])

    # 5. box mode: a drag becomes a box in image pixels
    browser.find_element(By.CSS_SELECTOR, f"{viewer}-bar button[title^='drag draws']").click()
    chain = ActionChains(browser).move_to_element_with_offset(canvas, -40, -30).click_and_hold()
    chain.move_by_offset(30, 20).move_by_offset(30, 20).release().perform()
    box = _wait_for(folder, "box", lambda e: True)
    assert box["y1"] > box["y0"] and box["x1"] > box["x0"]
    assert (box["x1"] - box["x0"]) == pytest.approx(60 / zoomed["scale"], rel=0.2)

    # 6. the pointer's pixel and every layer's value there, in the status line
    ActionChains(browser).move_to_element_with_offset(canvas, 3, 2).perform()
    WebDriverWait(browser, 20).until(lambda d: " · TL " in d.find_element(
        By.CSS_SELECTOR, f"{viewer}-pointer").text)
    text = browser.find_element(By.CSS_SELECTOR, f"{viewer}-pointer").text
    import re

    match = re.search(r"y (\d+), x (\d+) · TL (\d+) · H2B \S+ · cells (\d+)", text)
    assert match, text
    py, px, tl_value, label_value = map(int, match.groups())
    assert int(pair.tl[py, px]) == tl_value and int(pair.labels[py, px]) == label_value

    # 7. opacity from the slider under the image reaches the kernel
    browser.execute_script(
        f"const s = document.querySelector('{viewer} input[data-opacity=\"H2B\"]');"
        "s.value = '0.3'; s.dispatchEvent(new Event('input'));")
    _wait_for(folder, "layers", lambda e: e["opacity"][1] == 0.3)

    # 8. the brush: a drag in brush mode is a stroke in image pixels
    browser.find_element(By.CSS_SELECTOR, f"{viewer}-bar button[title^='drag paints']").click()
    ActionChains(browser).move_to_element_with_offset(canvas, -20, 0).click_and_hold() \
        .move_by_offset(20, 0).move_by_offset(20, 0).release().perform()
    stroke = _wait_for(folder, "stroke", lambda e: True)
    assert stroke["n"] >= 2 and not stroke["erase"] and stroke["area"] > 0
    browser.save_screenshot(str(folder / "viewer.png"))


def _keys_reach_the_viewer_only_while_pointed_at(browser, canvas, viewer):
    cells = f"{ACTIVE} .jp-Notebook .jp-Cell"
    toolbar = browser.find_element(By.CSS_SELECTOR, f"{ACTIVE} .jp-Toolbar")
    ActionChains(browser).move_to_element(toolbar).perform()
    browser.find_element(By.CSS_SELECTOR, f"{ACTIVE} .jp-Cell .jp-InputPrompt").click()
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()  # command mode, as a user leaves it
    n_cells = len(browser.find_elements(By.CSS_SELECTOR, cells))
    assert "keys-on" not in browser.find_element(By.CSS_SELECTOR, viewer).get_attribute("class")
    ActionChains(browser).move_to_element(canvas).perform()
    root = browser.find_element(By.CSS_SELECTOR, viewer)
    assert "cellnb-viewer-keys-on" in root.get_attribute("class")  # the visible key state
    keymap = browser.find_element(By.CSS_SELECTOR, f"{viewer}-keymap").text
    assert keymap.startswith("⌨ keys on:") and "b box" in keymap and "0 whole image" in keymap
    assert browser.execute_script("return document.activeElement.tagName") != "CANVAS"
    ActionChains(browser).send_keys("+", "b", "0", "0").perform()  # (z is a review key)
    time.sleep(1.0)
    assert not browser.find_elements(By.CSS_SELECTOR, ".jp-Dialog"), "a JupyterLab dialog opened"
    assert len(browser.find_elements(By.CSS_SELECTOR, cells)) == n_cells
    box_button = browser.find_element(By.CSS_SELECTOR, f"{viewer}-bar button[title^='drag draws']")
    assert "active" in box_button.get_attribute("class")  # `b` was the viewer's: box mode
    browser.find_element(By.CSS_SELECTOR, f"{viewer}-bar button[title^='drag pans']").click()
    # away from the image the keys are the notebook's again: `b` inserts a cell below
    ActionChains(browser).move_to_element(toolbar).perform()
    browser.find_element(By.CSS_SELECTOR, f"{ACTIVE} .jp-Cell .jp-InputPrompt").click()
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    assert "keys-on" not in browser.find_element(By.CSS_SELECTOR, viewer).get_attribute("class")
    ActionChains(browser).send_keys("b").perform()
    WebDriverWait(browser, 10).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, cells)) == n_cells + 1)
    assert "active" not in box_button.get_attribute("class")


REVIEW = """
from cellnb import Config, annotate, data
from cellnb.testing import random_sam
from cellnb.widgets import review

_ = data.write_pairs(data.synthetic_pairs(1, shape=({size}, {size}), n_cells=6, seed=5), "pairs")
_ = annotate("pairs", "out", config=Config.from_dict({{"locate": {{"method": "auto"}}}}),
             model="watershed", progress=False)
panel = review("out", model=random_sam("vit_t", seed=0), height=480)
panel
"""


def test_review_in_jupyterlab_rejects_and_adds_cells_on_disk(lab, browser, tmp_path):
    """The review notebook as a user runs it: a click rejects a cell, one on empty TL adds one."""
    base, token, folder = lab
    work = folder / "review"
    work.mkdir()
    _write_notebook(REVIEW.format(size=SIZE), work / "review.ipynb")
    with _screenshot_on_failure(browser, folder):
        _drive_review(browser, base, token, work)


def _drive_review(browser, base, token, work):
    import pandas as pd
    from scipy import ndimage

    from cellnb.io import read_labels
    from cellnb.segment import segment_click
    from cellnb.testing import random_sam

    url = f"{base}/lab/tree/review/review.ipynb?reset&token={token}"
    canvas, width, height = _open_and_run(browser, url, timeout=180)
    scale = min(width / SIZE, height / SIZE)

    def click(y, x):
        ActionChains(browser).move_to_element_with_offset(
            canvas, round((x + 0.5 - SIZE / 2) * scale), round((y + 0.5 - SIZE / 2) * scale)
        ).click().perform()

    record = next((work / "out" / "records").iterdir())
    labels = read_labels(record / "cells.tif")
    label = int(np.bincount(labels.ravel())[1:].argmax()) + 1  # the largest cell
    dist = ndimage.distance_transform_edt(labels == label)
    y, x = np.unravel_index(np.argmax(dist), dist.shape)
    click(y, x)

    def status_of(label):
        cells = pd.read_csv(record / "cells.csv", index_col="label")
        return cells.loc[label, "status"] if label in cells.index else None

    WebDriverWait(browser, 120).until(lambda d: status_of(label) == "rejected")
    assert not (read_labels(record / "cells.tif") == label).any()

    def edits():
        provenance = json.loads((record / "record.json").read_text())
        return [e["op"] for e in provenance.get("curation", {}).get("edits", [])]

    def status():
        return browser.find_element(By.CSS_SELECTOR, f"{ACTIVE} .widget-html").text

    settled = WebDriverWait(browser, 60, ignored_exceptions=(StaleElementReferenceException,))
    # a double click on a cell is one click: rejected once, not rejected and restored
    other = int(np.bincount(labels.ravel())[1:].argsort()[-2]) + 1
    oy, ox = np.unravel_index(np.argmax(ndimage.distance_transform_edt(labels == other)),
                              labels.shape)
    ActionChains(browser).move_to_element_with_offset(
        canvas, round((ox + 0.5 - SIZE / 2) * scale), round((oy + 0.5 - SIZE / 2) * scale)
    ).double_click().perform()
    WebDriverWait(browser, 60).until(lambda d: status_of(other) == "rejected")
    time.sleep(1.5)
    assert edits() == ["reject", "reject"] and status_of(other) == "rejected"

    # a click on empty TL: SAM (the notebook's random-init vit_t, seed 0) draws a preview
    pair = synthetic_pairs(1, shape=(SIZE, SIZE), n_cells=6, seed=5)[0]
    model = random_sam("vit_t", seed=0)
    current = read_labels(record / "cells.tif")
    target = None
    for by in range(8, SIZE, 16):
        for bx in range(8, SIZE, 16):
            if current[by, bx] == 0 and ndimage.binary_erosion(current == 0, iterations=3)[by, bx]:
                mask, _ = segment_click(model, pair.tl, [(by + 0.5, bx + 0.5, True)])
                if (mask & (current == 0)).sum() > 30:
                    target = (by, bx)
                    break
        if target:
            break
    assert target is not None, "the random-init model draws no mask anywhere on this image"
    # every text the status lines show from now on (the embedding takes seconds)
    browser.execute_script(f"""
        window._seen = [];
        const panel = document.querySelector('{ACTIVE} .jp-OutputArea-output .widget-vbox');
        new MutationObserver(() => window._seen.push(
            panel.querySelector('.widget-html').textContent + ' | ' +
            panel.querySelector('.cellnb-viewer-work').textContent))
          .observe(panel, {{subtree: true, childList: true, characterData: true}});""")
    click(*target)
    settled.until(lambda d: status().startswith("preview of a new cell"))
    assert "Enter accepts, Esc discards" in status() and "SAM score" in status()
    assert edits() == ["reject", "reject"]  # nothing written before Enter
    seen = browser.execute_script("return window._seen;")
    assert any("working…" in t for t in seen), seen  # at once, in the browser
    assert any(t.startswith("computing SAM's image embedding") for t in seen), seen
    ActionChains(browser).send_keys(Keys.ENTER).perform()  # the pointer is on the image
    WebDriverWait(browser, 60).until(lambda d: edits() == ["reject", "reject", "add"])
    new = read_labels(record / "cells.tif")
    added = int(new.max())
    assert added > labels.max() and (new == added).sum() > 0
    settled.until(lambda d: status().startswith(f"added cell {added}"))
    # `z` over the image is the widget's undo, not JupyterLab's
    n_cells = len(browser.find_elements(By.CSS_SELECTOR, f"{ACTIVE} .jp-Notebook .jp-Cell"))
    ActionChains(browser).send_keys("z").perform()
    WebDriverWait(browser, 60).until(lambda d: edits() == ["reject", "reject"])
    assert len(browser.find_elements(By.CSS_SELECTOR, f"{ACTIVE} .jp-Notebook .jp-Cell")) \
        == n_cells

    # an edit made elsewhere (another widget, a script): this widget's next edit is refused
    from cellnb import curate

    curate.restore(work / "out", record.name, other)
    click(y, x)  # would restore the first cell
    settled.until(lambda d: "changed since it was read" in status())
    assert "reloaded" in status() and edits() == ["reject", "reject", "restore"]
    # any failure shows in the status line: the record folder is gone
    import shutil

    shutil.rmtree(record)
    click(oy, ox)
    settled.until(lambda d: status().startswith("FileNotFoundError: no record"))


TUNER = f"""
from cellnb.data import synthetic_pairs
from cellnb.widgets import tune_locate

tuner = tune_locate(synthetic_pairs(1, shape=({SIZE}, {SIZE}), n_cells=8, seed=0))
tuner
"""


def test_locate_tuner_fits_the_column_in_jupyterlab(lab, browser):
    """Nothing of the tuner is clipped or scrolls sideways; Save is on screen; the viewer draws."""
    base, token, folder = lab
    _write_notebook(TUNER, folder / "tuner.ipynb")
    with _screenshot_on_failure(browser, folder):
        _open_and_run(browser, f"{base}/lab/tree/tuner.ipynb?reset&token={token}")
        report = browser.execute_script(f"""
            const panel = document.querySelector('{ACTIVE} .jp-OutputArea-output .widget-vbox');
            const area = panel.closest('.jp-OutputArea-output');
            const save = [...panel.querySelectorAll('button')]
                .find(b => b.textContent.includes('Save config'));
            const a = area.getBoundingClientRect(), s = save.getBoundingClientRect();
            const wide = [...panel.querySelectorAll('*')]
                .filter(e => e.getBoundingClientRect().right > a.right + 1).length;
            const culprits = [...panel.querySelectorAll('*')]
                .filter(e => e.getBoundingClientRect().right > a.right + 1)
                .map(e => e.className + ':' + Math.round(e.getBoundingClientRect().right - a.right));
            console.log(culprits);
            window._culprits = culprits;
            return {{overflow: panel.scrollWidth - area.clientWidth, wide,
                     save_inside: s.left >= a.left && s.right <= a.right + 1 && s.width > 0}};
        """)
        assert report["overflow"] <= 1 and report["wide"] == 0 and report["save_inside"], (
            report, browser.execute_script("return window._culprits;"))
        method = browser.find_element(By.CSS_SELECTOR, f"{ACTIVE} .widget-dropdown select")
        assert method.get_attribute("value") is not None
        # every slider has a track a mouse can drag (issue 34: 0-28 px tracks)
        tracks = browser.execute_script(f"""
            return [...document.querySelectorAll('{ACTIVE} .widget-slider')].map(s => {{
                const t = s.querySelector('.slider-container, .slider');
                return [s.querySelector('.widget-label').textContent,
                        Math.round(t.getBoundingClientRect().width)];
            }});""")
        assert len(tracks) == 4 and all(width >= 120 for _, width in tracks), tracks
        # in `auto` the greyed-out controls are explained on screen
        note = browser.find_element(By.XPATH, "//*[contains(text(), 'are greyed out')]")
        assert note.is_displayed()
