// Front end of cellnb.viewer.Viewer: one canvas, drawn from the layers Python sends.
//
// anywidget loads this module in JupyterLab, Notebook 7, VS Code and Colab. The
// model holds the small state (`layers`: names, kinds, colours, points and boxes;
// `view`: centre and scale; `mode`); image and label rasters come as PNG buffers
// in custom messages and are cached here. Interaction: drag pans, the wheel zooms
// about the pointer, a click (shift-click) or, in box mode, a drag is sent to
// Python in image pixel coordinates (row y, column x).

const CLICK_SLOP = 4; // pointer travel (screen px) below which a press is a click

function render({ model, el }) {
  const rasters = new Map(); // layer name -> canvas holding its pixels (patched in place)
  const root = document.createElement("div");
  root.className = "cellnb-viewer";
  const bar = document.createElement("div");
  bar.className = "cellnb-viewer-bar";
  const stage = document.createElement("div");
  stage.className = "cellnb-viewer-stage";
  const canvas = document.createElement("canvas");
  canvas.tabIndex = 0;
  canvas.setAttribute("aria-label", "image viewer");
  stage.appendChild(canvas);
  const panel = document.createElement("div");
  panel.className = "cellnb-viewer-layers";
  const status = document.createElement("div");
  status.className = "cellnb-viewer-status";
  root.append(bar, stage, panel, status);
  el.appendChild(root);
  const ctx = canvas.getContext("2d");

  // ---- toolbar: mode, zoom -------------------------------------------------
  function button(label, title, onclick) {
    const b = document.createElement("button");
    b.textContent = label;
    b.title = title;
    b.className = "cellnb-viewer-button";
    b.addEventListener("click", onclick);
    bar.appendChild(b);
    return b;
  }
  const panButton = button("pan", "drag pans, click selects (key: p)", () => setMode("pan"));
  const boxButton = button("box", "drag draws a box prompt (key: b)", () => setMode("box"));
  button("+", "zoom in (key: +)", () => zoomBy(2, canvas.width / 2, canvas.height / 2));
  button("−", "zoom out (key: -)", () => zoomBy(0.5, canvas.width / 2, canvas.height / 2));
  button("fit", "whole image (key: 0)", () => fit());

  function setMode(mode) {
    model.set("mode", mode);
    model.save_changes();
  }
  function showMode() {
    const mode = model.get("mode");
    panButton.classList.toggle("active", mode === "pan");
    boxButton.classList.toggle("active", mode === "box");
    canvas.style.cursor = mode === "box" ? "crosshair" : "grab";
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
    const [h, w] = shape();
    status.textContent = `${w} × ${h} px · zoom ${v.scale.toFixed(v.scale < 1 ? 3 : 1)}× · ${model.get("mode")} mode`;
  }

  // ---- layer list: a checkbox and a colour swatch per layer ----------------
  function buildPanel() {
    panel.replaceChildren();
    for (const layer of model.get("layers")) {
      const row = document.createElement("label");
      row.className = "cellnb-viewer-layer";
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
      row.append(box, swatch, name);
      panel.appendChild(row);
    }
  }

  // ---- pointer: pan, click, box ---------------------------------------------
  let press = null;
  function canvasXY(event) {
    const rect = canvas.getBoundingClientRect();
    return [(event.clientX - rect.left) * (canvas.width / rect.width),
            (event.clientY - rect.top) * (canvas.height / rect.height)];
  }
  canvas.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    canvas.focus();
    canvas.setPointerCapture(event.pointerId);
    const [px, py] = canvasXY(event);
    press = { px, py, view: view(), moved: false, shift: event.shiftKey };
  });
  canvas.addEventListener("pointermove", (event) => {
    const [px, py] = canvasXY(event);
    if (!press) {
      const [y, x] = toImage(px, py);
      const [h, w] = shape();
      if (y >= 0 && x >= 0 && y < h && x < w) {
        status.dataset.pointer = `${Math.floor(y)},${Math.floor(x)}`;
      }
      return;
    }
    if (Math.hypot(px - press.px, py - press.py) > CLICK_SLOP) press.moved = true;
    if (!press.moved) return;
    if (model.get("mode") === "box") {
      const [y0, x0] = toImage(press.px, press.py);
      const [y1, x1] = toImage(px, py);
      dragBox = [Math.min(y0, y1), Math.min(x0, x1), Math.max(y0, y1), Math.max(x0, x1)];
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
    if (!press.moved) {
      const [y, x] = toImage(px, py);
      const [h, w] = shape();
      if (y >= 0 && x >= 0 && y < h && x < w) {
        model.send({ event: "click", y, x, shift: press.shift || event.shiftKey });
      }
    } else if (dragBox) {
      const [y0, x0, y1, x1] = dragBox;
      model.send({ event: "box", y0, x0, y1, x1 });
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
  canvas.addEventListener("keydown", (event) => {
    const key = event.key;
    if (key === "+" || key === "=") zoomBy(2, canvas.width / 2, canvas.height / 2);
    else if (key === "-") zoomBy(0.5, canvas.width / 2, canvas.height / 2);
    else if (key === "0") fit();
    else if (key === "p") setMode("pan");
    else if (key === "b") setMode("box");
    // every key also goes to Python (undo, next pair, ...); JupyterLab must not see it
    event.stopPropagation();
    model.send({ event: "key", key, shift: event.shiftKey, ctrl: event.ctrlKey || event.metaKey });
  });

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

  // ---- messages from Python: rasters ---------------------------------------
  async function decode(buffer) {
    return createImageBitmap(new Blob([buffer], { type: "image/png" }));
  }
  async function onMessage(msg, buffers) {
    if (msg.event === "raster") { // a whole layer
      const bitmap = await decode(buffers[0]);
      const surface = document.createElement("canvas");
      surface.width = bitmap.width;
      surface.height = bitmap.height;
      surface.getContext("2d").drawImage(bitmap, 0, 0);
      bitmap.close();
      rasters.set(msg.name, surface);
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
      draw();
    }
  }
  model.on("msg:custom", onMessage);
  model.on("change:layers", () => { buildPanel(); draw(); });
  model.on("change:view", draw);
  model.on("change:shape", () => { resize(); draw(); });
  model.on("change:mode", () => { showMode(); draw(); });

  buildPanel();
  showMode();
  resize();
  model.send({ event: "ready" }); // Python answers with every raster this view lacks
  return () => {
    observer.disconnect();
    model.off("msg:custom", onMessage);
    rasters.clear();
  };
}

export default { render };
