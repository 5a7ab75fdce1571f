// Front end of cellnb.viewer.Viewer: one canvas, drawn from the layers Python sends.
//
// anywidget loads this module in JupyterLab, Notebook 7, VS Code and Colab. The
// model holds the small state (`layers`: names, kinds, colours, points and boxes;
// `view`: centre and scale; `mode`; `keymap`; `pixel_size`; `brush_radius`);
// image and label rasters come as PNG buffers in custom messages and are cached
// here. Interaction: drag pans, the wheel zooms about the pointer, a click
// (shift-click) or, in box mode, a drag is sent to Python in image pixel
// coordinates (row y, column x); in brush / eraser mode a drag is a stroke.
//
// Keys: taken from the page only while the pointer is over the image (and no
// text editor has the focus) or the image itself has the focus, and only the
// keys of the key map drawn under the image. Everything else stays the
// notebook's, so JupyterLab's `b`, `0 0`, `z` never act while the user means
// the viewer, and act as usual once the pointer leaves it.

const CLICK_SLOP = 4; // pointer travel (screen px) below which a press is a click
const DOUBLE_CLICK_MS = 400; // a second click this soon, this near, is the same click
const VIEWER_KEYS = {
  "+": "zoom in", "-": "zoom out", "0": "whole image", "p": "pan", "b": "box",
  "r": "brush", "e": "eraser",
};
const KEY_NAMES = { "ArrowRight": "→", "ArrowLeft": "←", "ArrowUp": "↑", "ArrowDown": "↓",
                    "Escape": "Esc", "-": "−" };

function render({ model, el }) {
  const rasters = new Map(); // layer name -> canvas holding its pixels (patched in place)
  const originals = new Map(); // image layer name -> its pixels as sent (for contrast)
  const levels = new Map(); // image layer name -> [black, white] in 0..255 of what was sent
  const root = document.createElement("div");
  root.className = "cellnb-viewer";
  const bar = document.createElement("div");
  bar.className = "cellnb-viewer-bar";
  const stage = document.createElement("div");
  stage.className = "cellnb-viewer-stage";
  const canvas = document.createElement("canvas");
  canvas.tabIndex = 0;
  canvas.setAttribute("aria-label", "image viewer: point at it or focus it for its keys");
  stage.appendChild(canvas);
  const panel = document.createElement("div");
  panel.className = "cellnb-viewer-layers";
  const status = document.createElement("div");
  status.className = "cellnb-viewer-status";
  const info = document.createElement("span");
  const pointer = document.createElement("span");
  pointer.className = "cellnb-viewer-pointer";
  const work = document.createElement("span");
  work.className = "cellnb-viewer-work";
  status.append(info, pointer, work);
  const keys = document.createElement("div");
  keys.className = "cellnb-viewer-keymap";
  root.append(bar, stage, panel, status, keys);
  el.appendChild(root);
  const ctx = canvas.getContext("2d");

  // ---- toolbar: mode, zoom, brush size -------------------------------------
  function button(label, title, onclick) {
    const b = document.createElement("button");
    b.textContent = label;
    b.title = title;
    b.className = "cellnb-viewer-button";
    b.addEventListener("click", onclick);
    bar.appendChild(b);
    return b;
  }
  const modeButtons = {
    pan: button("pan", "drag pans, click selects (key: p)", () => setMode("pan")),
    box: button("box", "drag draws a box prompt (key: b)", () => setMode("box")),
    brush: button("brush", "drag paints the cell it starts in (key: r)", () => setMode("brush")),
    erase: button("eraser", "drag erases cell pixels (key: e)", () => setMode("erase")),
  };
  button("+", "zoom in (key: +)", () => zoomBy(2, canvas.width / 2, canvas.height / 2));
  button("−", "zoom out (key: -)", () => zoomBy(0.5, canvas.width / 2, canvas.height / 2));
  button("fit", "whole image (key: 0)", () => fit());
  const brushSize = document.createElement("label");
  brushSize.className = "cellnb-viewer-brush";
  brushSize.textContent = "size ";
  const brushInput = document.createElement("input");
  brushInput.type = "range";
  brushInput.min = "1";
  brushInput.max = "40";
  brushInput.step = "0.5";
  brushInput.title = "brush / eraser radius in image pixels";
  brushInput.addEventListener("input", () => {
    model.set("brush_radius", Number(brushInput.value));
    model.save_changes();
    draw();
  });
  brushSize.appendChild(brushInput);
  bar.appendChild(brushSize);

  function setMode(mode) {
    model.set("mode", mode);
    model.save_changes();
  }
  function showMode() {
    const mode = model.get("mode");
    const tools = model.get("tools") || ["pan", "box"];
    for (const [name, b] of Object.entries(modeButtons)) {
      b.classList.toggle("active", mode === name);
      b.style.display = tools.includes(name) ? "" : "none";
    }
    const painting = mode === "brush" || mode === "erase";
    brushSize.style.display = painting ? "" : "none";
    brushInput.value = String(model.get("brush_radius"));
    canvas.style.cursor = mode === "box" ? "crosshair" : painting ? "none" : "grab";
  }

  // ---- keys: only while the pointer is on the image or the image has the focus
  let hover = false;
  function editing() { // a text editor (a notebook cell, an input) keeps its keys
    const a = document.activeElement;
    if (!a || a === canvas) return false;
    return a.isContentEditable || a.tagName === "TEXTAREA" ||
      (a.tagName === "INPUT" && !["checkbox", "range", "button"].includes(a.type));
  }
  function keysActive() {
    return document.activeElement === canvas || (hover && !editing());
  }
  function keyName(key) { return key === "=" ? "+" : key; }
  function keymap() {
    const tools = model.get("tools") || ["pan", "box"];
    const own = Object.fromEntries(Object.entries(VIEWER_KEYS).filter(([k]) =>
      !((k === "r" && !tools.includes("brush")) || (k === "e" && !tools.includes("erase")))));
    return { ...own, ...(model.get("keymap") || {}) };
  }
  function showKeys() {
    const active = keysActive();
    root.classList.toggle("cellnb-viewer-keys-on", active);
    const list = Object.entries(keymap()).map(([k, what]) => `${KEY_NAMES[k] ?? k} ${what}`);
    keys.textContent = (active ? "⌨ keys on: " : "⌨ point at the image for its keys: ")
      + list.join(" · ");
  }
  function onKey(event) {
    if (!keysActive() || event.ctrlKey || event.metaKey || event.altKey) return;
    const key = keyName(event.key);
    const map = keymap();
    if (!(key in map)) return; // not ours: the notebook keeps it
    event.preventDefault();
    event.stopPropagation();
    event.stopImmediatePropagation();
    if (key === "+") zoomBy(2, canvas.width / 2, canvas.height / 2);
    else if (key === "-") zoomBy(0.5, canvas.width / 2, canvas.height / 2);
    else if (key === "0") fit();
    else if (key === "p") setMode("pan");
    else if (key === "b") setMode("box");
    else if (key === "r") setMode("brush");
    else if (key === "e") setMode("erase");
    else busy(true); // a panel's key: Python works on it
    model.send({ event: "key", key, shift: event.shiftKey });
  }
  // capture phase on the window: before JupyterLab's own shortcut handling sees the key
  window.addEventListener("keydown", onKey, true);
  stage.addEventListener("pointerenter", () => { hover = true; showKeys(); });
  stage.addEventListener("pointerleave", () => {
    hover = false;
    brushAt = null;
    pointer.textContent = "";
    showKeys();
    draw();
  });
  canvas.addEventListener("focus", showKeys);
  canvas.addEventListener("blur", showKeys);

  // ---- "working": from an event sent to Python until Python says it is done
  function busy(on) {
    root.classList.toggle("cellnb-viewer-busy", on);
    work.textContent = on ? " · working…" : "";
  }

  // ---- view: image pixel (y, x) <-> canvas pixel ---------------------------
  function shape() {
    const s = model.get("shape");
    return [Math.max(s[0], 1), Math.max(s[1], 1)];
  }
  function fitScale() {
    const [h, w] = shape();
    return Math.min(canvas.width / w, canvas.height / h);
  }
  function view() {
    const v = model.get("view");
    const [h, w] = shape();
    return {
      cy: v.cy ?? h / 2,
      cx: v.cx ?? w / 2,
      scale: v.scale ?? fitScale(),
    };
  }
  function toImage(px, py) {
    const v = view();
    return [v.cy + (py - canvas.height / 2) / v.scale, v.cx + (px - canvas.width / 2) / v.scale];
  }
  function toCanvas(y, x) {
    const v = view();
    return [canvas.width / 2 + (x - v.cx) * v.scale, canvas.height / 2 + (y - v.cy) * v.scale];
  }
  function inside(y, x) {
    const [h, w] = shape();
    return y >= 0 && x >= 0 && y < h && x < w;
  }
  let saveTimer = null;
  function setView(v, save = true) {
    const limit = model.get("max_scale");
    const scale = Math.min(Math.max(v.scale, fitScale() / 4), limit);
    model.set("view", { cy: v.cy, cx: v.cx, scale });
    draw();
    if (save) {
      clearTimeout(saveTimer); // tell Python once the user pauses
      saveTimer = setTimeout(() => model.save_changes(), 150);
    }
  }
  function zoomBy(factor, px, py) {
    const v = view();
    const [y, x] = toImage(px, py);
    const scale = Math.min(Math.max(v.scale * factor, fitScale() / 4), model.get("max_scale"));
    // keep the image point under the pointer where it is
    setView({
      cy: y - (py - canvas.height / 2) / scale,
      cx: x - (px - canvas.width / 2) / scale,
      scale,
    });
  }
  function fit() {
    const [h, w] = shape();
    setView({ cy: h / 2, cx: w / 2, scale: fitScale() });
  }

  // ---- drawing -------------------------------------------------------------
  let dragBox = null; // [y0, x0, y1, x1] while a box is drawn
  let stroke = null; // [[y, x], ...] while a brush / eraser stroke is drawn
  let brushAt = null; // [y, x] of the pointer in brush / eraser mode
  function niceLength(um) { // 1, 2 or 5 times a power of ten, at most `um`
    const p = Math.pow(10, Math.floor(Math.log10(um)));
    return [5, 2, 1].map((m) => m * p).find((v) => v <= um) ?? p;
  }
  function drawScaleBar(v) {
    const size = model.get("pixel_size");
    if (!size) return;
    const um = niceLength(120 / v.scale * size);
    const length = um / size * v.scale;
    const x1 = canvas.width - 14, y = canvas.height - 14;
    ctx.fillStyle = "rgba(0, 0, 0, 0.55)";
    ctx.fillRect(x1 - length - 6, y - 20, length + 12, 28);
    ctx.fillStyle = "#fff";
    ctx.fillRect(x1 - length, y, length, 4);
    ctx.font = "12px sans-serif";
    ctx.textAlign = "center";
    ctx.fillText(`${um >= 1 ? um : um.toPrecision(1)} µm`, x1 - length / 2, y - 5);
    ctx.textAlign = "start";
  }
  function draw() {
    const v = view();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#111";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    const [ox, oy] = toCanvas(0, 0);
    for (const layer of model.get("layers")) {
      if (!layer.visible) continue;
      ctx.globalAlpha = layer.opacity ?? 1;
      if (layer.kind === "image" || layer.kind === "labels") {
        const surface = rasters.get(layer.name);
        if (!surface) continue;
        // nearest neighbour once pixels are bigger than screen pixels: cells stay crisp
        ctx.imageSmoothingEnabled = v.scale < 1;
        ctx.setTransform(v.scale, 0, 0, v.scale, ox, oy);
        ctx.drawImage(surface, 0, 0);
        ctx.setTransform(1, 0, 0, 1, 0, 0);
      } else if (layer.kind === "points") {
        ctx.fillStyle = layer.color;
        const r = layer.size ?? 3;
        for (const [y, x] of layer.data) {
          const [cx, cy] = toCanvas(y, x);
          if (cx < -r || cy < -r || cx > canvas.width + r || cy > canvas.height + r) continue;
          ctx.beginPath();
          ctx.arc(cx, cy, r, 0, 2 * Math.PI);
          ctx.fill();
        }
      } else if (layer.kind === "boxes") {
        ctx.strokeStyle = layer.color;
        ctx.lineWidth = 1.5;
        for (const [y0, x0, y1, x1] of layer.data) {
          const [ax, ay] = toCanvas(y0, x0);
          const [bx, by] = toCanvas(y1, x1);
          ctx.strokeRect(ax, ay, bx - ax, by - ay);
        }
      }
    }
    ctx.globalAlpha = 1;
    if (dragBox) {
      const [ax, ay] = toCanvas(dragBox[0], dragBox[1]);
      const [bx, by] = toCanvas(dragBox[2], dragBox[3]);
      ctx.setLineDash([5, 4]);
      ctx.strokeStyle = "#ffd400";
      ctx.lineWidth = 1.5;
      ctx.strokeRect(ax, ay, bx - ax, by - ay);
      ctx.setLineDash([]);
    }
    const radius = model.get("brush_radius") * v.scale;
    const erase = model.get("mode") === "erase";
    if (stroke && stroke.length) {
      ctx.globalAlpha = 0.45;
      ctx.strokeStyle = ctx.fillStyle = erase ? "#ff3030" : "#39ff14";
      ctx.lineWidth = 2 * radius;
      ctx.lineCap = ctx.lineJoin = "round";
      ctx.beginPath();
      const [sx, sy] = toCanvas(stroke[0][0], stroke[0][1]);
      ctx.moveTo(sx, sy);
      for (const [y, x] of stroke) ctx.lineTo(...toCanvas(y, x));
      if (stroke.length === 1) ctx.lineTo(sx + 0.01, sy);
      ctx.stroke();
      ctx.globalAlpha = 1;
    }
    if (brushAt) { // the brush outline follows the pointer
      const [cx, cy] = toCanvas(brushAt[0], brushAt[1]);
      ctx.strokeStyle = erase ? "#ff3030" : "#39ff14";
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.arc(cx, cy, Math.max(radius, 2), 0, 2 * Math.PI);
      ctx.stroke();
    }
    drawScaleBar(v);
    const [h, w] = shape();
    const size = model.get("pixel_size");
    const um = size ? ` (${(w * size).toFixed(0)} × ${(h * size).toFixed(0)} µm)` : "";
    info.textContent = `${w} × ${h} px${um} · zoom ${v.scale.toFixed(v.scale < 1 ? 3 : 1)}× · ${model.get("mode")} mode`;
  }

  // ---- contrast of an image layer: its sent pixels between a black and a white level
  function applyLevels(name) {
    const original = originals.get(name);
    const surface = rasters.get(name);
    if (!original || !surface) return;
    const [lo, hi] = levels.get(name) ?? [0, 255];
    const out = new ImageData(new Uint8ClampedArray(original.data), original.width,
                              original.height);
    const gain = 255 / Math.max(hi - lo, 1);
    const grey = model.get("layers").find((l) => l.name === name)?.color === "#808080";
    const d = out.data;
    for (let i = 0; i < d.length; i += 4) {
      if (grey) { // grey levels: the same level in r, g, b
        const value = Math.min(Math.max((d[i] - lo) * gain, 0), 255);
        d[i] = d[i + 1] = d[i + 2] = value;
      } else { // a coloured channel: its intensity is its opacity
        d[i + 3] = Math.min(Math.max((d[i + 3] - lo) * gain, 0), 255);
      }
    }
    surface.getContext("2d").putImageData(out, 0, 0);
    draw();
  }

  // ---- layer list: a checkbox, a colour swatch, opacity and contrast per layer
  function slider(title, min, max, step, value, oninput) {
    const input = document.createElement("input");
    input.type = "range";
    input.min = String(min);
    input.max = String(max);
    input.step = String(step);
    input.value = String(value);
    input.title = title;
    input.addEventListener("input", () => oninput(Number(input.value)));
    return input;
  }
  function buildPanel() {
    panel.replaceChildren();
    for (const layer of model.get("layers")) {
      const row = document.createElement("div");
      row.className = "cellnb-viewer-layer";
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = layer.visible;
      box.dataset.layer = layer.name;
      box.addEventListener("change", () => {
        const layers = model.get("layers").map((l) =>
          l.name === layer.name ? { ...l, visible: box.checked } : l);
        model.set("layers", layers);
        model.save_changes();
      });
      const swatch = document.createElement("span");
      swatch.className = "cellnb-viewer-swatch";
      swatch.style.background = layer.color ?? "#888";
      const name = document.createElement("span");
      name.textContent = `${layer.name} (${layer.kind})`;
      label.append(box, swatch, name);
      row.appendChild(label);
      if (layer.kind === "image" || layer.kind === "labels") {
        const opacity = slider(`opacity of ${layer.name}`, 0, 1, 0.05, layer.opacity ?? 1,
          (value) => {
            const layers = model.get("layers").map((l) =>
              l.name === layer.name ? { ...l, opacity: value } : l);
            model.set("layers", layers);
            draw();
            clearTimeout(saveTimer);
            saveTimer = setTimeout(() => model.save_changes(), 150);
          });
        opacity.dataset.opacity = layer.name;
        row.append(" opacity", opacity);
      }
      if (layer.kind === "image") {
        const [lo, hi] = levels.get(layer.name) ?? [0, 255];
        const black = slider(`black level of ${layer.name}`, 0, 254, 1, lo, (value) => {
          const [, white] = levels.get(layer.name) ?? [0, 255];
          levels.set(layer.name, [Math.min(value, white - 1), white]);
          applyLevels(layer.name);
        });
        const white = slider(`white level of ${layer.name}`, 1, 255, 1, hi, (value) => {
          const [low] = levels.get(layer.name) ?? [0, 255];
          levels.set(layer.name, [low, Math.max(value, low + 1)]);
          applyLevels(layer.name);
        });
        black.dataset.black = layer.name;
        white.dataset.white = layer.name;
        row.append(" contrast", black, white);
      }
      panel.appendChild(row);
    }
  }

  // ---- pointer: pan, click, box, stroke; the pixel under it --------------------
  let press = null;
  let lastClick = null; // {t, px, py}: a double click is one click, not two edits
  let hoverTimer = null;
  let hoverPixel = null;
  function canvasXY(event) {
    const rect = canvas.getBoundingClientRect();
    return [(event.clientX - rect.left) * (canvas.width / rect.width),
            (event.clientY - rect.top) * (canvas.height / rect.height)];
  }
  function painting() {
    const mode = model.get("mode");
    return mode === "brush" || mode === "erase";
  }
  function showPointer(y, x) {
    if (!inside(y, x)) {
      pointer.textContent = "";
      hoverPixel = null;
      return;
    }
    const row = Math.floor(y), col = Math.floor(x);
    const key = `${row},${col}`;
    status.dataset.pointer = key;
    if (key === hoverPixel) return;
    hoverPixel = key;
    pointer.textContent = ` · y ${row}, x ${col}`;
    clearTimeout(hoverTimer); // ask Python for the values once the pointer rests
    hoverTimer = setTimeout(() => model.send({ event: "hover", y: row + 0.5, x: col + 0.5 }), 60);
  }
  canvas.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    canvas.focus({ preventScroll: true });
    canvas.setPointerCapture(event.pointerId);
    const [px, py] = canvasXY(event);
    press = { px, py, view: view(), moved: false, shift: event.shiftKey };
    if (painting()) {
      stroke = [toImage(px, py)];
      draw();
    }
  });
  canvas.addEventListener("pointermove", (event) => {
    const [px, py] = canvasXY(event);
    const [y, x] = toImage(px, py);
    showPointer(y, x);
    if (painting()) {
      brushAt = [y, x];
      if (!press) draw();
    }
    if (!press) return;
    if (Math.hypot(px - press.px, py - press.py) > CLICK_SLOP) press.moved = true;
    if (painting()) {
      stroke.push([y, x]);
      draw();
      return;
    }
    if (!press.moved) return;
    if (model.get("mode") === "box") {
      const [y0, x0] = toImage(press.px, press.py);
      dragBox = [Math.min(y0, y), Math.min(x0, x), Math.max(y0, y), Math.max(x0, x)];
      draw();
    } else {
      const v = press.view;
      setView({ cy: v.cy - (py - press.py) / v.scale, cx: v.cx - (px - press.px) / v.scale,
                scale: v.scale });
    }
  });
  canvas.addEventListener("pointerup", (event) => {
    if (!press) return;
    const [px, py] = canvasXY(event);
    if (painting() && stroke) {
      model.send({ event: "stroke", points: stroke, radius: model.get("brush_radius"),
                   erase: model.get("mode") === "erase" });
      busy(true);
      stroke = null;
      draw();
    } else if (!press.moved) {
      const [y, x] = toImage(px, py);
      const now = performance.now();
      const again = lastClick && now - lastClick.t < DOUBLE_CLICK_MS &&
        Math.hypot(px - lastClick.px, py - lastClick.py) < 2 * CLICK_SLOP;
      lastClick = again ? null : { t: now, px, py };
      if (again) {
        work.textContent = " · double click: counted once";
      } else if (inside(y, x)) {
        model.send({ event: "click", y, x, shift: press.shift || event.shiftKey });
        busy(true);
      }
    } else if (dragBox) {
      const [y0, x0, y1, x1] = dragBox;
      model.send({ event: "box", y0, x0, y1, x1 });
      busy(true);
      dragBox = null;
      draw();
    }
    press = null;
  });
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault(); // zoom the image, not scroll the notebook
    const [px, py] = canvasXY(event);
    zoomBy(Math.exp(-event.deltaY * 0.002), px, py);
  }, { passive: false });

  // ---- size: the canvas fills the output area's width ----------------------
  function resize() {
    const width = Math.max(Math.floor(stage.clientWidth), 100);
    const [h, w] = shape();
    const height = Math.min(Math.round(width * h / w), model.get("height"));
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
      draw();
    }
  }
  const observer = new ResizeObserver(resize);
  observer.observe(stage);

  // ---- messages from Python: rasters, values under the pointer, done -----------
  async function decode(buffer) {
    return createImageBitmap(new Blob([buffer], { type: "image/png" }));
  }
  async function onMessage(msg, buffers) {
    if (msg.event === "raster") { // a whole layer
      const bitmap = await decode(buffers[0]);
      const surface = document.createElement("canvas");
      surface.width = bitmap.width;
      surface.height = bitmap.height;
      const c = surface.getContext("2d", { willReadFrequently: true });
      c.drawImage(bitmap, 0, 0);
      bitmap.close();
      rasters.set(msg.name, surface);
      const layer = model.get("layers").find((l) => l.name === msg.name);
      if (layer?.kind === "image") { // kept for the contrast sliders
        originals.set(msg.name, c.getImageData(0, 0, surface.width, surface.height));
        if (levels.has(msg.name)) applyLevels(msg.name);
      }
      draw();
    } else if (msg.event === "patch") { // a window of a layer: what one correction changed
      const surface = rasters.get(msg.name);
      if (!surface) return;
      const bitmap = await decode(buffers[0]);
      const c = surface.getContext("2d");
      c.clearRect(msg.x0, msg.y0, bitmap.width, bitmap.height);
      c.drawImage(bitmap, msg.x0, msg.y0);
      bitmap.close();
      draw();
    } else if (msg.event === "drop") {
      rasters.delete(msg.name);
      originals.delete(msg.name);
      levels.delete(msg.name);
      draw();
    } else if (msg.event === "values") {
      const key = `${Math.floor(msg.y)},${Math.floor(msg.x)}`;
      if (key === hoverPixel && msg.text) {
        pointer.textContent = ` · y ${Math.floor(msg.y)}, x ${Math.floor(msg.x)} · ${msg.text}`;
      }
    } else if (msg.event === "idle") {
      busy(false);
    }
  }
  model.on("msg:custom", onMessage);
  model.on("change:layers", () => { buildPanel(); draw(); });
  model.on("change:view", draw);
  model.on("change:shape", () => { resize(); draw(); });
  model.on("change:mode", () => { showMode(); draw(); });
  model.on("change:keymap", showKeys);
  model.on("change:tools", () => { showMode(); showKeys(); });
  model.on("change:pixel_size", draw);
  model.on("change:brush_radius", showMode);

  buildPanel();
  showMode();
  showKeys();
  resize();
  model.send({ event: "ready" }); // Python answers with every raster this view lacks
  return () => {
    observer.disconnect();
    window.removeEventListener("keydown", onKey, true);
    model.off("msg:custom", onMessage);
    rasters.clear();
    originals.clear();
  };
}

export default { render };
