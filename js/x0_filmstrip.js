// x̂0 filmstrip: every sampler node (any node with a LATENT output) shows the x̂0 of each step as it is sampled.
// The server sends "ddistill.x0_frame" events (nodes/recorder.py, LiveX0Frames) from the pack's samplers
// and from stock samplers wrapped by "Record x̂0 Sampler". Each node owns one listener, removed with the node.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const EVENT = "ddistill.x0_frame";
const MAX_FRAMES = 64;
const THUMB_PX = 96;
const STRIP_HEIGHT = THUMB_PX + 34;

class Filmstrip {
  constructor(node) {
    this.node = node;
    this.promptId = null;
    this.frames = new Map(); // step -> <figure>
    this.widget = null;
    this.onFrame = (event) => this.add(event.detail);
    api.addEventListener(EVENT, this.onFrame);
  }

  element() {
    if (this.widget) return this.widget.element;
    const el = document.createElement("div");
    el.className = "ddistill-filmstrip";
    el.dataset.nodeId = String(this.node.id);
    Object.assign(el.style, {
      display: "flex", gap: "4px", overflowX: "auto", alignItems: "flex-start", padding: "2px",
      background: "rgba(0,0,0,0.25)", borderRadius: "4px", boxSizing: "border-box",
    });
    this.widget = this.node.addDOMWidget("x0_filmstrip", "ddistill_filmstrip", el, {
      serialize: false, hideOnZoom: false, getMinHeight: () => STRIP_HEIGHT, getMaxHeight: () => STRIP_HEIGHT,
    });
    const size = this.node.computeSize();
    this.node.setSize([Math.max(this.node.size[0], size[0]), Math.max(this.node.size[1], size[1])]);
    return el;
  }

  add(frame) {
    if (!frame || String(frame.node) !== String(this.node.id)) return;
    const strip = this.element();
    if (frame.prompt_id !== this.promptId) { // a new run: start a new strip
      this.promptId = frame.prompt_id;
      this.frames.clear();
      strip.replaceChildren();
    }
    const fig = document.createElement("figure");
    fig.className = "ddistill-frame";
    fig.dataset.step = String(frame.step);
    const level = frame.level || `sigma ${frame.sigma.toPrecision(3)} · t ${Math.round(frame.timestep)}`;
    fig.title = `step ${frame.step + 1} · ${level} · ${frame.model}`;
    Object.assign(fig.style, { margin: "0", flex: "0 0 auto", textAlign: "center", font: "10px sans-serif",
                               color: "var(--input-text, #ddd)" });
    const pic = document.createElement(frame.image ? "img" : "div");
    if (frame.image) pic.src = frame.image;
    Object.assign(pic.style, { height: `${THUMB_PX}px`, minWidth: `${THUMB_PX / 2}px`, display: "block",
                               background: "#333", imageRendering: "auto" });
    const caption = document.createElement("figcaption");
    caption.textContent = `${frame.step + 1} ${frame.model}`;
    fig.append(pic, caption);
    this.frames.get(frame.step)?.remove();
    this.frames.set(frame.step, fig);
    const after = [...this.frames.keys()].filter((s) => s > frame.step).sort((a, b) => a - b)[0];
    strip.insertBefore(fig, after === undefined ? null : this.frames.get(after));
    while (this.frames.size > MAX_FRAMES) {
      const first = Math.min(...this.frames.keys());
      this.frames.get(first).remove();
      this.frames.delete(first);
    }
    const want = Math.min(640, 24 + this.frames.size * (THUMB_PX + 6)); // widen the node for a few frames
    if (this.node.size[0] < want) this.node.setSize([want, this.node.size[1]]);
    this.node.setDirtyCanvas?.(true, true);
  }

  dispose() {
    api.removeEventListener(EVENT, this.onFrame);
    this.frames.clear();
    this.widget = null;
  }
}

// x̂0 Preview: its text result (distance to the final image per step, and any cap note) under its images.
function showSummary(nodeType) {
  const executed = nodeType.prototype.onExecuted;
  nodeType.prototype.onExecuted = function (message) {
    const r = executed?.apply(this, arguments);
    const text = message?.text?.[0];
    if (typeof text === "string") {
      if (!this.ddistillSummary) {
        const el = document.createElement("pre");
        el.className = "ddistill-x0-summary";
        Object.assign(el.style, { margin: "0", whiteSpace: "pre-wrap", font: "11px monospace", overflow: "auto",
                                  color: "var(--input-text, #ddd)" });
        this.ddistillSummary = el;
        this.addDOMWidget("x0_summary", "ddistill_summary", el, { serialize: false, hideOnZoom: false,
                                                                 getMinHeight: () => 44, getMaxHeight: () => 90 });
      }
      this.ddistillSummary.textContent = text;
    }
    return r;
  };
}

const extension = {
  name: "DDistill.X0Filmstrip",
  filmstrips: new Map(), // node -> Filmstrip (tests and other extensions may inspect it)

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name === "DDistill_X0Preview") showSummary(nodeType);
    if (!(nodeData.output || []).includes("LATENT")) return;
    const created = nodeType.prototype.onNodeCreated;
    const removed = nodeType.prototype.onRemoved;
    nodeType.prototype.onNodeCreated = function () {
      const r = created?.apply(this, arguments);
      extension.filmstrips.set(this, new Filmstrip(this));
      return r;
    };
    nodeType.prototype.onRemoved = function () {
      extension.filmstrips.get(this)?.dispose();
      extension.filmstrips.delete(this);
      return removed?.apply(this, arguments);
    };
  },
};

app.registerExtension(extension);
