// Diversity Meter: shows the measured numbers on the node (mean pairwise distance, 95% interval, N and pairs,
// min/max pair; with a second batch both numbers and the difference B - A). The server sends them in the node's
// ui output "ddistill_diversity" (nodes/meter_nodes.py); the heatmap arrives as the node's image preview.
// One "executed" listener per node, removed with the node.
// The panel wraps its lines to the node's width and reserves exactly the height its content needs at that width
// (measured on an off-screen copy), so no line is cut at the node's edge; it is measured again when the node is
// resized. Under the "Nodes 2.0" renderer the panel simply takes its content's height.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NODE_ID = "DDistill_DiversityMeter";
const UI_KEY = "ddistill_diversity";
const MARGIN = 6; // the DOM widget's margin on each side (the frontend's default is 10)
const MAX_AUTO_WIDTH = 460; // the node widens for its longest row up to this; wider rows wrap

const fmt = (x) => (typeof x === "number" && Number.isFinite(x) ? x.toFixed(4) : "n/a");
const signed = (x) => (typeof x === "number" && Number.isFinite(x) ? (x >= 0 ? "+" : "") + x.toFixed(4) : "n/a");
const interval = (ci) => (Array.isArray(ci) ? `[${fmt(ci[0])}, ${fmt(ci[1])}]` : "n/a");

function summaryRow(tag, s) {
  const row = document.createElement("div");
  row.className = "ddistill-diversity-row";
  row.dataset.batch = tag;
  row.textContent = `${tag}: ${fmt(s.mean)} ${interval(s.ci)}  N=${s.n} (${s.n_pairs} pairs)`;
  row.title = `std over pairs ${fmt(s.std)}; min pair (${s.min_pair[0]}, ${s.min_pair[1]}) = ${fmt(s.min_pair[2])};` +
    ` max pair (${s.max_pair[0]}, ${s.max_pair[1]}) = ${fmt(s.max_pair[2])}; ${s.method}`;
  return row;
}

// Height of `el`'s content when laid out `width` px wide (an off-screen copy, shown even where the frontend hides
// the panel itself), and the width of its widest number row unwrapped (the backend label below may wrap).
function measure(el, width) {
  const copy = el.cloneNode(true);
  Object.assign(copy.style, {
    position: "fixed", left: "-10000px", top: "0", visibility: "hidden", display: "block", transform: "none",
    height: "auto", maxHeight: "none", minHeight: "0", width: `${Math.max(1, width)}px`, maxWidth: "none",
  });
  document.body.appendChild(copy);
  const height = copy.scrollHeight;
  copy.style.whiteSpace = "pre";
  const range = document.createRange();
  let natural = 0;
  for (const child of copy.children) {
    if (child.classList.contains("ddistill-diversity-label")) continue;
    range.selectNodeContents(child);
    natural = Math.max(natural, range.getBoundingClientRect().width);
  }
  copy.remove();
  return { height: Math.ceil(height) + 2, natural: Math.ceil(natural) + 14 }; // + the panel's padding
}

class MeterPanel {
  constructor(node) {
    this.node = node;
    this.widget = null;
    this.height = 0; // the panel's content height at `measuredWidth`
    this.measuredWidth = 0;
    this.onExecuted = (event) => {
      const d = event.detail;
      if (d && String(d.display_node ?? d.node) === String(this.node.id) && d.output?.[UI_KEY]) {
        this.show(d.output[UI_KEY][0]);
      }
    };
    api.addEventListener("executed", this.onExecuted);
  }

  element() {
    if (this.widget) return this.widget.element;
    const el = document.createElement("div");
    el.className = "ddistill-diversity";
    el.dataset.nodeId = String(this.node.id);
    Object.assign(el.style, {
      font: "12px monospace", lineHeight: "15px", color: "var(--input-text, #ddd)",
      background: "rgba(0,0,0,0.25)", borderRadius: "4px", padding: "4px 6px", boxSizing: "border-box",
      whiteSpace: "pre-wrap", overflowWrap: "anywhere", overflow: "hidden", minWidth: "0", maxWidth: "100%",
    });
    const panelHeight = () => this.heightFor(this.node.size[0]) + 2 * MARGIN;
    this.widget = this.node.addDOMWidget("diversity", "ddistill_diversity", el, {
      serialize: false, hideOnZoom: false, margin: MARGIN, getMinHeight: panelHeight, getMaxHeight: panelHeight,
      afterResize: () => this.fit(),
    });
    return el;
  }

  // The content height for a node `nodeWidth` wide (cached per width; the content changes only in show()).
  heightFor(nodeWidth) {
    const width = Math.round(nodeWidth - 2 * MARGIN);
    if (this.widget && width !== this.measuredWidth) {
      this.height = measure(this.widget.element, width).height;
      this.measuredWidth = width;
    }
    return this.height;
  }

  // Grow the node (never shrink it) to what its widgets, the panel at its measured height included, need.
  fit() {
    if (!this.widget || this.fitting) return;
    this.fitting = true;
    try {
      const size = this.node.computeSize();
      const [w, h] = this.node.size;
      if (size[1] > h) this.node.setSize([w, size[1]]);
      this.node.setDirtyCanvas?.(true, true);
    } finally {
      this.fitting = false;
    }
  }

  show(p) {
    if (!p || !p.a) return;
    const el = this.element();
    const head = document.createElement("div");
    head.className = "ddistill-diversity-head";
    head.textContent = `mean pairwise distance (${Math.round((p.level ?? 0.95) * 100)}% interval)`;
    const rows = [head, summaryRow("A", p.a)];
    if (p.b) {
      rows.push(summaryRow("B", p.b));
      const diff = document.createElement("div");
      diff.className = "ddistill-diversity-row";
      diff.dataset.batch = "B-A";
      diff.textContent = `B - A: ${signed(p.difference)} ${interval(p.difference_ci)}`;
      rows.push(diff);
    }
    const label = document.createElement("div");
    label.className = "ddistill-diversity-label";
    label.textContent = p.label ?? p.backend ?? "";
    Object.assign(label.style, { opacity: "0.7", fontSize: "10px" });
    rows.push(label);
    el.replaceChildren(...rows);
    el.title = p.report ?? "";
    // wide enough for the longest number row (up to MAX_AUTO_WIDTH), then tall enough for the wrapped content
    const { natural } = measure(el, this.node.size[0] - 2 * MARGIN);
    const width = Math.max(this.node.size[0], Math.min(natural + 2 * MARGIN, MAX_AUTO_WIDTH));
    if (width > this.node.size[0]) this.node.setSize([width, this.node.size[1]]);
    this.measuredWidth = 0; // new content: measure again
    this.fit();
  }

  dispose() {
    api.removeEventListener("executed", this.onExecuted);
    this.widget = null;
  }
}

const extension = {
  name: "DDistill.DiversityMeter",
  panels: new Map(), // node -> MeterPanel (tests may inspect it)

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== NODE_ID) return;
    const created = nodeType.prototype.onNodeCreated;
    const removed = nodeType.prototype.onRemoved;
    nodeType.prototype.onNodeCreated = function () {
      const r = created?.apply(this, arguments);
      extension.panels.set(this, new MeterPanel(this));
      return r;
    };
    nodeType.prototype.onRemoved = function () {
      extension.panels.get(this)?.dispose();
      extension.panels.delete(this);
      return removed?.apply(this, arguments);
    };
  },
};

app.registerExtension(extension);

// No template ordering here: the frontend's extension API has no hook for the order of a pack's templates, and the
// one way to reorder them (wrapping api.getWorkflowTemplates) replaces a method every pack and the core call. The
// cards come in the order ComfyUI's /workflow_templates globs the files; the file names start with the experiment
// number (01_, 02a_, ..., 11_), so the template dialog's "A → Z" sort shows them in experiment order (README:
// "Example workflows").
