// The journey canvas: draws a journey's graph (model/journey_graph.py's nodes and edges) as SVG,
// laid out by dagre every time (positions are never stored: the YAML is the only source of truth).
//
// NFCanvas.render(container, graph, {counts, onSelect}) -> canvas
//   graph:   {nodes: [{id, kind, title, summary, ...}], edges: [{id, source, target, label}]}
//   counts:  {nodeId: [[label, number], ...]} shown on the node ("120 sent", "3 here now")
//   canvas:  {select(id), focus(id), selected(), setProblems({nodeId: [message]}), layoutMs}
//
// Every node is a <g> with data-step-id (the step's id; "@trigger", "@goal", "@exit", "@end" for the
// others), focusable with a roving tabindex: Tab enters the canvas at one node, the arrow keys move
// between nodes (down: the next step, up: the one before, left/right: beside it), Enter or Space
// selects, Home goes to the trigger.
(function () {
  "use strict";

  const SVG = "http://www.w3.org/2000/svg";
  const NODE_W = 240;
  const NODE_H = 70;
  const CHAR_W = 6.6; // an average glyph at 12 px: edge labels are sized without measuring text

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const key in attrs) node.setAttribute(key, attrs[key]);
    if (parent) parent.appendChild(node);
    return node;
  }

  function clip(text, max) {
    text = String(text || "");
    return text.length > max ? text.slice(0, max - 1) + "…" : text;
  }

  function countsText(pairs) {
    return (pairs || []).map((pair) => `${Number(pair[1]).toLocaleString("en")} ${pair[0]}`).join(" · ");
  }

  // The node's three lines as drawn (clipped to fit), then whatever the clipping cut: the
  // accessible name holds the visible text (WCAG 2.5.3, "label in name") and all of it.
  function lines(node, counts) {
    const title = node.id.startsWith("@") ? node.title : `${node.title} · ${node.id}`;
    return [clip(title, 29), clip(node.summary, 33), clip(countsText(counts), 33)];
  }

  // The node's name is its visible text (WCAG 2.5.3, "label in name"); its description (an SVG
  // <desc>, which screen readers announce after the name) holds the lines in full.
  function describe(node, counts) {
    return [node.title, node.id.startsWith("@") ? "" : `step ${node.id}`, node.summary, countsText(counts)]
      .filter(Boolean)
      .join(". ");
  }

  function layout(graph) {
    const dagre = window.NFVendor.dagre;
    const g = new dagre.graphlib.Graph({ multigraph: true });
    g.setGraph({ rankdir: "TB", nodesep: 36, ranksep: 46, edgesep: 14, marginx: 16, marginy: 16 });
    for (const node of graph.nodes) g.setNode(node.id, { width: NODE_W, height: NODE_H });
    // Labels are laid out by dagre as well (each takes a place between two ranks), so none
    // sits on a node or on another label; that doubles the ranks, and about the layout's time.
    for (const edge of graph.edges) {
      const label = edge.label ? clip(edge.label, 40) : "";
      const dims = label ? { label, width: label.length * CHAR_W + 8, height: 18, labelpos: "c" } : {};
      g.setEdge(edge.source, edge.target, dims, edge.id);
    }
    dagre.layout(g);
    return g;
  }

  function render(container, graph, options) {
    const opts = options || {};
    const counts = opts.counts || {};
    const started = performance.now();
    const g = layout(graph);
    const size = g.graph();
    container.textContent = "";
    const svg = el("svg", { class: "nf-canvas", role: "group", "aria-label": opts.label || "Journey canvas" });
    const defs = el("defs", {}, svg);
    const marker = el(
      "marker",
      { id: "nf-arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto" },
      defs,
    );
    el("path", { d: "M0,0 L10,5 L0,10 z", class: "nf-arrowhead" }, marker);

    // The drawing's bounds: dagre's, widened by any edge label that sticks out of them.
    let minX = 0;
    let maxX = size.width;
    const edgeLayer = el("g", { class: "edges", "aria-hidden": "true" }, svg);
    for (const edge of graph.edges) {
      const laid = g.edge({ v: edge.source, w: edge.target, name: edge.id });
      if (!laid) continue;
      const d = laid.points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
      const group = el("g", { class: "edge", "data-edge-id": edge.id }, edgeLayer);
      el("path", { d, "marker-end": "url(#nf-arrow)" }, group);
      if (laid.label) {
        const label = laid.label;
        const at = { x: laid.x, y: laid.y };
        const w = laid.width;
        minX = Math.min(minX, at.x - w / 2 - 4);
        maxX = Math.max(maxX, at.x + w / 2 + 4);
        el("rect", { x: at.x - w / 2, y: at.y - 9, width: w, height: 18, rx: 4, class: "edge-label-bg" }, group);
        const text = el("text", { x: at.x, y: at.y + 4, "text-anchor": "middle", class: "edge-label" }, group);
        text.textContent = label;
      }
    }

    const width = Math.ceil(maxX - minX);
    const height = Math.ceil(size.height);
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", `${Math.floor(minX)} 0 ${width} ${height}`);
    const nodeLayer = el("g", { class: "nodes" }, svg);
    const elements = new Map();
    graph.nodes.forEach((node, index) => {
      const laid = g.node(node.id);
      const x = laid.x - NODE_W / 2;
      const y = laid.y - NODE_H / 2;
      const group = el(
        "g",
        {
          class: `node kind-${node.kind}`,
          "data-step-id": node.id,
          "data-kind": node.kind,
          transform: `translate(${x.toFixed(1)},${y.toFixed(1)})`,
          tabindex: "-1",
          role: "button",
          "aria-pressed": "false",
          "aria-describedby": `nf-desc-${index}`,
        },
        nodeLayer,
      );
      el("rect", { width: NODE_W, height: NODE_H, rx: 8, class: "box" }, group);
      el("rect", { width: 6, height: NODE_H, rx: 3, class: "band" }, group);
      const [titleText, summaryText, countText] = lines(node, counts[node.id]);
      el("text", { x: 14, y: 18, class: "title" }, group).textContent = titleText;
      el("text", { x: 14, y: 37, class: "summary" }, group).textContent = summaryText;
      el("text", { x: 14, y: 57, class: "counts", "data-testid": "node-counts" }, group).textContent = countText;
      el("desc", { id: `nf-desc-${index}` }, group).textContent = describe(node, counts[node.id]);
      elements.set(node.id, { node, group, x: laid.x, y: laid.y });
    });
    container.appendChild(svg);

    const out = [];
    const into = [];
    for (const edge of graph.edges) {
      (out[edge.source] = out[edge.source] || []).push(edge.target);
      (into[edge.target] = into[edge.target] || []).push(edge.source);
    }
    let current = graph.nodes.length ? graph.nodes[0].id : null;
    let selectedId = null;

    function focus(id) {
      const item = elements.get(id);
      if (!item) return;
      if (current && elements.get(current)) elements.get(current).group.setAttribute("tabindex", "-1");
      item.group.setAttribute("tabindex", "0");
      current = id;
      item.group.focus();
    }

    function select(id) {
      const item = elements.get(id);
      if (!item) return;
      if (selectedId && elements.get(selectedId)) {
        const before = elements.get(selectedId).group;
        before.classList.remove("selected");
        before.setAttribute("aria-pressed", "false");
      }
      selectedId = id;
      item.group.classList.add("selected");
      item.group.setAttribute("aria-pressed", "true");
      if (opts.onSelect) opts.onSelect(item.node);
    }

    // The node beside this one: the nearest in the same row (dagre's rank), on the given side.
    function beside(id, side) {
      const here = elements.get(id);
      let best = null;
      for (const [other, item] of elements) {
        if (other === id || Math.abs(item.y - here.y) > 1) continue;
        const dx = (item.x - here.x) * side;
        if (dx > 0 && (best === null || dx < best[0])) best = [dx, other];
      }
      return best && best[1];
    }

    // Up/down follow the links (the first one), else the nearest node in the next row.
    function along(id, list, down) {
      const linked = (list[id] || []).filter((t) => elements.has(t) && t !== id);
      if (linked.length) return linked[0];
      const here = elements.get(id);
      let best = null;
      for (const [other, item] of elements) {
        const dy = (item.y - here.y) * (down ? 1 : -1);
        if (dy <= 1) continue;
        const score = dy * 4 + Math.abs(item.x - here.x);
        if (best === null || score < best[0]) best = [score, other];
      }
      return best && best[1];
    }

    svg.addEventListener("click", (event) => {
      const group = event.target.closest("g.node");
      if (!group) return;
      focus(group.dataset.stepId);
      select(group.dataset.stepId);
    });
    svg.addEventListener("keydown", (event) => {
      const group = event.target.closest("g.node");
      if (!group) return;
      const id = group.dataset.stepId;
      let next = null;
      switch (event.key) {
        case "Enter":
        case " ":
          select(id);
          break;
        case "ArrowDown":
          next = along(id, out, true);
          break;
        case "ArrowUp":
          next = along(id, into, false);
          break;
        case "ArrowLeft":
          next = beside(id, -1);
          break;
        case "ArrowRight":
          next = beside(id, 1);
          break;
        case "Home":
          next = graph.nodes.length ? graph.nodes[0].id : null;
          break;
        default:
          return;
      }
      event.preventDefault();
      if (next) focus(next);
    });
    if (current) elements.get(current).group.setAttribute("tabindex", "0");

    const layoutMs = performance.now() - started;
    container.dataset.layoutMs = layoutMs.toFixed(1);
    return {
      layoutMs,
      focus,
      select,
      selected: () => selectedId,
      // {nodeId: ["message", ...]}: the node is marked invalid and says why (in its tooltip and
      // accessible name); a node id that is not drawn is ignored (the page lists every problem).
      setProblems(problems) {
        for (const [id, item] of elements) {
          const messages = problems[id] || [];
          item.group.classList.toggle("invalid", messages.length > 0);
          item.group.querySelectorAll(".problem").forEach((n) => n.remove());
          const desc = item.group.querySelector("desc");
          desc.textContent = describe(item.node, counts[id]);
          if (messages.length) {
            item.group.setAttribute("aria-invalid", "true");
            const badge = el("text", { x: NODE_W - 10, y: 18, "text-anchor": "end", class: "problem" }, item.group);
            badge.textContent = `⚠ ${messages.length}`;
            desc.textContent += `. Problems: ${messages.join("; ")}`;
          } else {
            item.group.removeAttribute("aria-invalid");
          }
        }
      },
    };
  }

  window.NFCanvas = { render, layout };
})();
