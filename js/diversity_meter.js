// Diversity Meter: shows the measured numbers on the node (mean pairwise distance, 95% interval, N and pairs,
// min/max pair; with a second batch both numbers and the difference B - A). The server sends them in the node's
// ui output "ddistill_diversity" (nodes/meter_nodes.py); the heatmap arrives as the node's image preview.
// One "executed" listener per node, removed with the node.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NODE_ID = "DDistill_DiversityMeter";
const UI_KEY = "ddistill_diversity";
const PANEL_PX = 92;

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

class MeterPanel {
  constructor(node) {
    this.node = node;
    this.widget = null;
    this.last = null;
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
      font: "12px monospace", color: "var(--input-text, #ddd)", background: "rgba(0,0,0,0.25)",
      borderRadius: "4px", padding: "4px 6px", boxSizing: "border-box", whiteSpace: "pre", overflow: "hidden",
    });
    this.widget = this.node.addDOMWidget("diversity", "ddistill_diversity", el, {
      serialize: false, hideOnZoom: false, getMinHeight: () => PANEL_PX, getMaxHeight: () => PANEL_PX,
    });
    return el;
  }

  show(p) {
    if (!p || !p.a) return;
    this.last = p;
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
    const size = this.node.computeSize();
    this.node.setSize([Math.max(this.node.size[0], size[0], 380), Math.max(this.node.size[1], size[1])]);
    this.node.setDirtyCanvas?.(true, true);
  }

  dispose() {
    api.removeEventListener("executed", this.onExecuted);
    this.widget = null;
    this.last = null;
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
