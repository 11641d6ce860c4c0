// The operations dashboard. It renders every snapshot that the server
// pushes on the event stream "events" (relative to the page), and fetches a
// trace from ../traces/{id} when the operator opens an error. Data reaches
// the DOM only as text nodes, textContent and attribute values, never as
// markup.

const STATES = new Set(["healthy", "degraded", "unhealthy", "drained", "unknown"]);
const STALE_AFTER_MS = 10000;
const RECONNECT_MS = 5000;

const $ = (id) => document.getElementById(id);
const ui = {
  system: $("system"),
  systemLight: $("system-light"),
  systemState: $("system-state"),
  systemReason: $("system-reason"),
  problem: $("problem"),
  updated: $("updated"),
  conn: $("conn"),
  favicon: $("favicon"),
  regions: $("regions"),
  pops: $("pops"),
  release: $("release"),
  scalingPanel: $("scaling-panel"),
  scaling: $("scaling"),
  health: $("health"),
  slos: $("slos"),
  errors: document.querySelector("#errors tbody"),
  tracePanel: $("trace-panel"),
  traceID: $("trace-id"),
  traceStatus: $("trace-status"),
  traceClose: $("trace-close"),
  waterfall: $("waterfall"),
};

const COLOURS = {
  healthy: "#16a34a",
  degraded: "#d97706",
  unhealthy: "#dc2626",
  drained: "#dc2626",
  unknown: "#6b7280",
};

// stateClass maps a state to the one the CSS knows; anything else is unknown.
function stateClass(s) {
  return STATES.has(s) ? s : "unknown";
}

// el makes an element. props: class, text, data-*/aria-*/other attributes
// (set as attribute values), on: {event: handler}. Children are nodes or
// strings (appended as text); null, undefined and false are skipped.
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = String(v);
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c);
  }
  return e;
}

function light(state) {
  const s = stateClass(state);
  return el("span", { class: `light state-${s}`, title: state || "unknown", "aria-label": state || "unknown" });
}

// Number formatting is fixed to one locale so that every operator reads
// the same figures.
const numFmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
const numFmt3 = new Intl.NumberFormat("en-US", { maximumSignificantDigits: 3 });

function finite(v) {
  return typeof v === "number" && Number.isFinite(v);
}
function fmtNum(v) {
  return finite(v) ? numFmt.format(v) : "–";
}
function fmtPct(v) {
  if (!finite(v)) return "–";
  const p = v * 100;
  return (p !== 0 && Math.abs(p) < 0.01 ? p.toExponential(1) : numFmt3.format(p)) + "%";
}
function fmtMs(v) {
  if (!finite(v)) return "–";
  return v >= 1000 ? numFmt3.format(v / 1000) + " s" : numFmt3.format(v) + " ms";
}
function fmtValue(v) {
  return finite(v) ? numFmt3.format(v) : "–";
}

// parseTime reads an RFC 3339 time with up to nanoseconds into fractional
// milliseconds since the epoch (Date.parse keeps only milliseconds, too
// coarse for short spans). NaN when it cannot.
function parseTime(s) {
  if (typeof s !== "string") return NaN;
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/i.exec(s);
  if (!m) return Date.parse(s);
  const base = Date.parse(m[1] + m[3].toUpperCase());
  return m[2] ? base + Number("0." + m[2]) * 1000 : base;
}

// fmtTime shows an RFC 3339 time as UTC wall-clock time.
function fmtTime(s, withMillis) {
  const t = parseTime(s);
  if (!finite(t)) return "–";
  const iso = new Date(t).toISOString();
  return withMillis ? iso.slice(11, 23) : iso.slice(11, 19);
}

// ---- header ----

function renderSystem(snap) {
  const root = snap.health;
  const state = root && root.state ? root.state : "unknown";
  const s = stateClass(state);
  ui.system.className = `system state-${s}`;
  ui.system.dataset.state = state;
  ui.systemLight.className = `light state-${s}`;
  ui.systemState.textContent = state;
  ui.systemReason.textContent = root ? root.reason || "" : "no health model";
  ui.updated.textContent = `updated ${fmtTime(snap.time)} UTC`;
  ui.updated.setAttribute("datetime", snap.time || "");
  document.title = `${state} · Contoso Shoes operations`;
  if (ui.favicon.dataset.state !== s) {
    // The tab's icon is the system's traffic light.
    const icon = `<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'><circle cx='8' cy='8' r='7' fill='${COLOURS[s]}'/></svg>`;
    ui.favicon.setAttribute("href", "data:image/svg+xml," + encodeURIComponent(icon));
    ui.favicon.dataset.state = s;
  }
}

function setConn(state, text) {
  ui.conn.dataset.conn = state;
  ui.conn.textContent = text || state;
}

function showProblem(text) {
  ui.problem.hidden = !text;
  ui.problem.textContent = text || "";
}

// ---- regions and POPs ----

function renderRegions(regions, pops) {
  ui.regions.replaceChildren(
    ...regions.map((r) => {
      const state = r.state || "unknown";
      return el(
        "article",
        { class: `card region state-${stateClass(state)}`, "data-region": r.name, "data-state": state },
        el("header", { class: "card-head" }, light(state), el("h3", { text: r.name }), el("span", { class: "state-label", text: state })),
        r.reason ? el("p", { class: "reason", text: r.reason }) : null,
        el(
          "ul",
          { class: "stamps", "aria-label": `stamps of ${r.name}` },
          (r.stamps || []).map((st) => {
            const ss = st.state || "unknown";
            return el(
              "li",
              { class: `stamp state-${stateClass(ss)}`, "data-stamp": st.id, "data-state": ss, "data-release": st.release || null, title: [st.id, st.zone, st.release, ss, st.reason, st.url].filter(Boolean).join(" · ") },
              el("span", { class: "stamp-id", text: st.id }),
              st.zone ? el("span", { class: "stamp-zone", "data-zone": st.zone, title: "zone", text: st.zone }) : null,
              el("span", { class: "stamp-state", text: ss }),
              st.release ? el("span", { class: "stamp-release", "data-release": st.release, title: "release", text: st.release }) : null,
              st.reason && ss !== "healthy" ? el("span", { class: "stamp-reason", text: st.reason }) : null,
            );
          }),
        ),
        el(
          "dl",
          { class: "metrics" },
          el("div", null, el("dt", { text: "rps" }), el("dd", { "data-metric": "rps", text: fmtNum(r.rps) })),
          el("div", null, el("dt", { text: "errors" }), el("dd", { "data-metric": "errorRatio", text: fmtPct(r.errorRatio) })),
          el("div", null, el("dt", { text: "p99" }), el("dd", { "data-metric": "p99Ms", text: fmtMs(r.p99Ms) })),
        ),
      );
    }),
  );
  if (!regions.length) ui.regions.append(el("p", { class: "empty", text: "No regions." }));

  ui.pops.replaceChildren(
    ...pops.map((p) => {
      const routes = p.routes || [];
      const rerouted = routes.length > 0 && routes[0] !== p.region;
      return el(
        "li",
        { class: "pop" + (p.failOpen ? " fail-open" : "") + (rerouted ? " rerouted" : ""), "data-pop": p.region, "data-fail-open": String(!!p.failOpen) },
        el("span", { class: "pop-name", text: `POP ${p.region}` }),
        el("span", { class: "arrow", text: " → " }),
        el("span", { class: "pop-routes", text: routes.length ? routes.join(", ") : "nowhere" }),
        p.failOpen ? el("span", { class: "badge warn", title: "no healthy stamp: the POP sends traffic anyway", text: "⚠ fail-open" }) : null,
        rerouted && !p.failOpen ? el("span", { class: "badge note", text: "rerouted" }) : null,
      );
    }),
  );
  if (!pops.length) ui.pops.append(el("li", { class: "empty", text: "No POPs." }));
}

// ---- release ----

const FINAL_PHASES = new Set(["done", "rolled-back", "failed"]);
const VERDICTS = new Set(["holding", "passed", "promoted", "failed"]);

// renderRelease shows the release under way or the last one: what it
// runs, its phase (paused stands out), each region's split as the POPs
// apply it, and every step of its plan with the gate's readings.
function renderRelease(rel, problem) {
  if (!rel) {
    ui.release.replaceChildren(el("p", { class: problem ? "release-problem" : "empty", text: problem || "No release has run." }));
    return;
  }
  const phase = rel.phase || "unknown";
  const from = rel.from || {};
  const olds = [...new Set(Object.values(from))].sort();
  const head = el(
    "div",
    { class: "release-head" },
    el("span", { class: "release-version", "data-release-version": rel.version, text: rel.version }),
    olds.length ? el("span", { class: "release-from", text: `from ${olds.join(", ")}` }) : null,
    el("span", { class: `phase phase-${phase}` + (FINAL_PHASES.has(phase) ? " final" : ""), "data-phase": phase, text: phase }),
    rel.paused ? el("span", { class: "paused", "data-paused": "true", text: "⏸ paused" }) : null,
    rel.env ? el("span", { class: "release-meta", text: rel.env }) : null,
    rel.image ? el("code", { class: "release-meta release-image", text: rel.image }) : null,
  );
  const times = [
    `started ${fmtTime(rel.startedAt)} UTC`,
    rel.by ? `by ${rel.by}` : "",
    rel.firstBadAt ? `first bad request ${fmtTime(rel.firstBadAt)}` : "",
    rel.rollbackAt ? `rollback ${fmtTime(rel.rollbackAt)}` : "",
    rel.endedAt ? `ended ${fmtTime(rel.endedAt)}` : "",
  ].filter(Boolean);
  ui.release.replaceChildren(
    el("div", { class: "release-summary" + (rel.paused ? " is-paused" : ""), "data-release": rel.id, "data-phase": phase, "data-paused": String(!!rel.paused) },
      head,
      el("p", { class: "release-times", text: times.join(" · ") }),
      rel.reason ? el("p", { class: "release-reason", text: rel.reason }) : null,
    ),
    el("h3", { class: "sub", text: "Traffic split, as the POPs apply it" }),
    el("div", { class: "splits" }, (rel.split || []).map((sp) => splitBar(sp, rel.version, from))),
    el("h3", { class: "sub", text: "Steps" }),
    stepTable(rel),
  );
}

// splitBar draws one region's old and new shares: new is the release's
// version, old everything else the POPs send traffic to.
function splitBar(sp, version, from) {
  const percents = sp.percents || {};
  const entries = Object.entries(percents);
  const row = el("div", { class: "split" + (sp.settled === false ? " unsettled" : ""), "data-split": sp.region });
  row.append(el("span", { class: "split-region", text: sp.region }));
  if (!entries.length) {
    row.dataset.new = "";
    row.dataset.old = "";
    row.append(
      el("span", { class: "split-track" }, el("span", { class: "split-none", text: "no split table: every stamp at its default weight" })),
      el("span", { class: "split-label" }),
    );
    return row;
  }
  const pct = (v) => (finite(v) ? Math.max(0, Math.min(100, v)) : 0);
  const nw = pct(percents[version]);
  const old = pct(entries.filter(([r]) => r !== version).reduce((sum, [, v]) => sum + (finite(v) ? v : 0), 0));
  const oldNames = entries.filter(([r]) => r !== version).map(([r]) => r);
  const oldName = oldNames.length ? oldNames.join(", ") : from[sp.region] || "old";
  row.dataset.new = String(nw);
  row.dataset.old = String(old);
  const oldSeg = el("span", { class: "split-old", title: `${oldName} ${old}%` });
  const newSeg = el("span", { class: "split-new", title: `${version} ${nw}%` });
  const total = Math.max(old + nw, 100);
  oldSeg.style.width = `${(old / total) * 100}%`;
  newSeg.style.width = `${(nw / total) * 100}%`;
  row.append(
    el("span", { class: "split-track", role: "img", "aria-label": `${sp.region}: ${oldName} ${old}%, ${version} ${nw}%` }, oldSeg, newSeg),
    el("span", { class: "split-label" },
      el("span", { class: "split-old-label", text: `${oldName} ${old}%` }),
      " · ",
      el("span", { class: "split-new-label", text: `${version} ${nw}%` }),
      sp.settled === false ? el("span", { class: "badge note", title: "the POPs do not all apply the same split yet", text: "changing" }) : null,
    ),
  );
  return row;
}

function stepTable(rel) {
  const plan = rel.plan || [];
  const steps = rel.steps || [];
  if (!plan.length) return el("p", { class: "empty", text: "The release has no plan." });
  const final = FINAL_PHASES.has(rel.phase);
  return el(
    "table",
    { class: "steps" },
    el("thead", null, el("tr", null, ["#", "region", "new share", "verdict", "new release", "old release", "reason"].map((h) => el("th", { scope: "col", text: h })))),
    el(
      "tbody",
      null,
      plan.map((stage, i) => {
        const st = steps[i];
        const verdict = st ? st.verdict || "holding" : final ? "skipped" : "pending";
        const current = i === rel.stage && !final;
        return el(
          "tr",
          { class: `step verdict-${VERDICTS.has(verdict) ? verdict : "other"}` + (current ? " current" : ""), "data-step": String(i), "data-verdict": verdict, "aria-current": current ? "step" : null },
          el("td", { class: "num", text: String(i + 1) }),
          el("td", { text: stage.region }),
          el("td", { class: "num", text: `${stage.percent}%` }),
          el("td", null, el("span", { class: "verdict", text: verdict })),
          el("td", null, st ? gateCell(st.new) : null),
          el("td", null, st ? gateCell(st.old) : null),
          el("td", { class: "step-reason", text: st ? st.reason || "" : "" }),
        );
      }),
    ),
  );
}

// gateCell lists what one release served over a step's window, by flow.
function gateCell(g) {
  if (!g) return null;
  const flows = g.flows || [];
  return el(
    "div",
    { class: "gate" },
    el("div", { class: "gate-head" }, light(g.health), ` ${g.instances || 0} stamp${g.instances === 1 ? "" : "s"}`),
    flows.length
      ? flows.map((f) =>
          el("div", { class: "gate-flow", "data-flow": f.flow },
            el("span", { class: "gate-flow-name", text: f.flow }),
            el("span", { class: "num", title: "requests", text: `${fmtValue(f.requests)} req` }),
            el("span", { class: "num" + (f.errorRatio > 0 ? " gate-errors" : ""), title: "error ratio", text: fmtPct(f.errorRatio) }),
            el("span", { class: "num", title: "p99", text: `p99 ${fmtMs(f.p99Ms)}` }),
          ),
        )
      : el("div", { class: "quiet", text: "no requests" }),
  );
}

// ---- autoscaling ----

// renderScaling shows the autoscaler: its rules (a hold stands out), a
// row per region with its count, what the last evaluation wanted and the
// load behind it, and its recent events with what each read. Without an
// autoscaler the panel is hidden.
function renderScaling(sc) {
  ui.scalingPanel.hidden = !sc;
  if (!sc) {
    ui.scaling.replaceChildren();
    return;
  }
  const policy = sc.policy || {};
  const rules = [
    `target ${fmtPct(policy.target)} ± ${fmtPct(policy.tolerance)} of it`,
    `out after ${fmtSeconds(policy.scaleOutAfterSeconds)} above`,
    `in after ${fmtSeconds(policy.scaleInAfterSeconds)} below`,
  ];
  ui.scaling.replaceChildren(
    el("div", { class: "scaling-summary" + (sc.held ? " is-held" : ""), "data-held": sc.held ? "true" : "false" },
      el("span", { class: "scaling-rules", text: rules.join(" · ") }),
      sc.held ? el("span", { class: "held", text: "⏸ held" }) : null,
      sc.held ? el("span", { class: "held-reason", text: sc.held }) : null,
    ),
    scalingRegions(sc.regions || [], policy.target),
    el("h3", { class: "sub", id: "scaling-events-title", text: "Events, newest first" }),
    scalingEvents(sc.events || []),
  );
}

function fmtSeconds(v) {
  return finite(v) ? fmtMs(v * 1000) : "–";
}

// fmtCount shows an instance count as text.
function fmtCount(v) {
  return finite(v) ? String(v) : "0";
}

function scalingRegions(regions, target) {
  if (!regions.length) return el("p", { class: "empty", text: "The autoscaler has not evaluated a region yet." });
  return el(
    "table",
    { class: "scaling-regions" },
    el("caption", { class: "visually-hidden", text: "Instances of each region, as of the autoscaler's last evaluation" }),
    el("thead", null, el("tr", null, ["region", "instances", "want", "min–max", "pre-scale until", "utilisation", "shed", "orders", "reason"].map((h) => el("th", { scope: "col", text: h })))),
    el(
      "tbody",
      null,
      regions.map((r) => {
        const inputs = r.inputs || {};
        const n = fmtCount(inputs.instances);
        const want = fmtCount(r.want);
        const trend = r.want > (inputs.instances || 0) ? "out" : r.want < (inputs.instances || 0) ? "in" : "";
        const util = finite(r.utilisation) ? r.utilisation : 0;
        const over = finite(target) && util > target;
        const fill = el("span", { class: "fill" });
        fill.style.width = `${Math.max(0, Math.min(1, util)) * 100}%`;
        const ps = r.preScale;
        return el(
          "tr",
          {
            class: trend ? `scaling-${trend}` : "",
            "data-scaling-region": r.region,
            "data-instances": n,
            "data-want": want,
            "data-utilisation": String(util),
          },
          el("th", { scope: "row", text: r.region }),
          el("td", { class: "num", "data-cell": "instances", title: `${fmtCount(inputs.reporting)} reporting a load` }, n),
          el("td", { class: "num", "data-cell": "want" },
            want,
            trend ? el("span", { class: "trend", "aria-hidden": "true", text: trend === "out" ? " ▲" : " ▼" }) : null,
            trend ? el("span", { class: "visually-hidden", text: trend === "out" ? " (scaling out)" : " (scaling in)" }) : null,
          ),
          el("td", { class: "num", "data-cell": "bounds", text: `${fmtCount(r.min)}–${fmtCount(r.max)}` }),
          el("td", { "data-cell": "pre-scale", class: ps && !ps.active ? "quiet" : "" },
            ps ? `at least ${fmtCount(ps.min)} until ${fmtTime(ps.until)} UTC` + (ps.active ? "" : " (ended)") : "–",
          ),
          el("td", { class: "utilisation" + (over ? " over" : ""), "data-cell": "utilisation" },
            el("span", { class: "meter", role: "img", "aria-label": `utilisation ${fmtPct(util)} of capacity, target ${fmtPct(target)}` }, fill),
            el("span", { class: "num", text: fmtPct(util) }),
          ),
          el("td", { class: "num" + (inputs.shed > 0 ? " shed" : ""), "data-cell": "shed", text: fmtValue(inputs.shed || 0) }),
          el("td", { "data-cell": "orders", text: fmtOrders(inputs) }),
          el("td", { class: "scaling-reason", "data-cell": "reason", text: r.reason || "" }),
        );
      }),
    ),
  );
}

// fmtOrders is the orders accepted and not yet processed that a region's
// inputs carry: queued (the shared queue), the oldest's wait, and in
// process on the region's instances.
function fmtOrders(inputs) {
  const queued = inputs.ordersQueued || 0;
  const oldest = queued > 0 ? ` (oldest ${fmtMs(inputs.ordersOldestMs || 0)})` : "";
  return `${fmtValue(queued)} queued${oldest}, ${fmtValue(inputs.ordersInProcess || 0)} in process`;
}

// describeInputs is what a decision read, in one line.
function describeInputs(inputs) {
  if (!inputs) return "";
  return [
    `${fmtCount(inputs.instances)} instances, ${fmtCount(inputs.reporting)} reporting`,
    `${fmtValue(inputs.inFlight || 0)} of ${fmtCount(inputs.capacity)} in flight`,
    `shed ${fmtValue(inputs.shed || 0)}`,
    `waiting ${fmtValue(inputs.waiting || 0)}`,
    `p99 ${fmtMs(inputs.p99Ms || 0)}`,
    `orders ${fmtOrders(inputs)}`,
    `bounds ${fmtCount(inputs.min)}–${fmtCount(inputs.max)}`,
  ].join(" · ");
}

const DECISIONS = new Set(["scale-out", "scale-in"]);

function scalingEvents(events) {
  if (!events.length) return el("p", { class: "empty", text: "No scaling events yet." });
  return el(
    "table",
    { class: "scaling-events", "aria-labelledby": "scaling-events-title" },
    el("thead", null, el("tr", null, ["time (UTC)", "region", "action", "change", "reason", "inputs", "time to traffic"].map((h) => el("th", { scope: "col", text: h })))),
    el(
      "tbody",
      null,
      events.map((e, i) => {
        const action = e.action || "";
        const change = DECISIONS.has(action) ? `${fmtCount(e.from || 0)} → ${fmtCount(e.to || 0)}` : e.instance || "";
        return el(
          "tr",
          {
            class: `scaling-event action-${action}`,
            "data-scaling-event": String(i),
            "data-action": action,
            "data-event-region": e.region || "",
            "data-from": DECISIONS.has(action) ? fmtCount(e.from || 0) : null,
            "data-to": DECISIONS.has(action) ? fmtCount(e.to || 0) : null,
            "data-to-traffic-ms": finite(e.toTrafficMs) ? String(e.toTrafficMs) : null,
          },
          el("td", { class: "time", title: e.at, text: fmtTime(e.at, true) }),
          el("td", { text: e.region || "all" }),
          el("td", null, el("span", { class: "action", text: action })),
          el("td", { class: DECISIONS.has(action) ? "num change" : "change", title: DECISIONS.has(action) && e.instance ? e.instance : null, text: change }),
          el("td", { class: "scaling-reason", text: e.reason || "" }),
          el("td", { class: "scaling-inputs", text: describeInputs(e.inputs) }),
          el("td", { class: "num", title: e.exceededAt ? `load above the target since ${fmtTime(e.exceededAt, true)} UTC` : null, text: finite(e.toTrafficMs) ? fmtMs(e.toTrafficMs) : "" }),
        );
      }),
    ),
  );
}

// ---- health model ----

// openNodes remembers the nodes the operator opened or closed, by entity
// id, so that the next snapshot does not undo it. Other nodes open when
// they are flows or not healthy.
const openNodes = new Map();

function renderHealth(root) {
  if (!root) {
    ui.health.replaceChildren(el("p", { class: "empty", text: "No health model yet." }));
    return;
  }
  const flows = root.children || [];
  ui.health.replaceChildren(
    flows.length ? el("ul", { class: "tree" }, flows.map((f) => healthNode(f, 0))) : el("p", { class: "empty", text: "The health model has no flows." }),
  );
}

function healthNode(n, depth) {
  const state = n.state || "unknown";
  const s = stateClass(state);
  const kids = n.children || [];
  const signals = n.signals || [];
  const line = [
    light(state),
    el("span", { class: "node-name", text: n.name || n.id }),
    n.kind ? el("span", { class: "node-kind", text: n.kind }) : null,
    n.region ? el("span", { class: "node-region", text: n.region }) : null,
    finite(n.score) ? el("span", { class: "node-score", title: "score", text: numFmt3.format(n.score) }) : null,
    n.reason ? el("span", { class: "node-reason", text: n.reason }) : null,
    n.impact ? el("span", { class: "node-impact", title: "impact on its parent", text: n.impact }) : null,
  ];
  const attrs = { class: `node state-${s}`, "data-entity": n.id, "data-state": state };
  if (!kids.length && !signals.length) {
    return el("li", attrs, el("div", { class: "node-line" }, line));
  }
  const details = el(
    "details",
    null,
    el("summary", { class: "node-line" }, line),
    signals.length ? signalTable(signals) : null,
    kids.length ? el("ul", { class: "tree" }, kids.map((k) => healthNode(k, depth + 1))) : null,
  );
  details.open = openNodes.has(n.id) ? openNodes.get(n.id) : depth === 0 || s === "degraded" || s === "unhealthy";
  // A click on the summary toggles the details after this handler runs.
  details.firstElementChild.addEventListener("click", () => openNodes.set(n.id, !details.open));
  return el("li", attrs, details);
}

function signalTable(signals) {
  return el(
    "table",
    { class: "signals" },
    el("thead", null, el("tr", null, ["signal", "value", "degraded at", "unhealthy at", "reason"].map((h) => el("th", { scope: "col", text: h })))),
    el(
      "tbody",
      null,
      signals.map((g) =>
        el(
          "tr",
          { class: `signal state-${stateClass(g.state)}`, "data-signal": g.name, "data-state": g.state || "unknown" },
          el("td", null, light(g.state), " ", g.name),
          el("td", { class: "num", text: fmtValue(g.value) }),
          el("td", { class: "num", text: fmtValue(g.degraded) }),
          el("td", { class: "num", text: fmtValue(g.unhealthy) }),
          el("td", { text: g.reason || "" }),
        ),
      ),
    ),
  );
}

// ---- SLOs ----

function renderSLOs(slos) {
  if (!slos.length) {
    ui.slos.replaceChildren(el("p", { class: "empty", text: "No SLOs." }));
    return;
  }
  ui.slos.replaceChildren(
    el(
      "table",
      { class: "slo-table" },
      el("thead", null, el("tr", null, ["SLO", "objective", "budget left", "burn rate", "alerts"].map((h) => el("th", { scope: "col", text: h })))),
      el(
        "tbody",
        null,
        slos.map((o) => {
          const alerts = o.alerts || [];
          const budget = finite(o.budgetRemaining) ? o.budgetRemaining : NaN;
          const budgetClass = !finite(budget) ? "" : budget <= 0 ? "spent" : budget < 0.25 ? "low" : "ok";
          const fill = el("span", { class: "fill" });
          fill.style.width = `${Math.max(0, Math.min(1, finite(budget) ? budget : 0)) * 100}%`;
          return el(
            "tr",
            { class: alerts.length ? "firing" : "", "data-slo": o.slo },
            el("td", null, el("div", { class: "slo-name", text: o.slo }), el("div", { class: "slo-meta", text: [o.flow, o.kind].filter(Boolean).join(" · ") })),
            el("td", { class: "num", text: fmtPct(o.objective) }),
            el("td", { class: `budget ${budgetClass}` }, el("span", { class: "meter" }, fill), el("span", { class: "num", text: fmtPct(budget) })),
            el(
              "td",
              null,
              el(
                "div",
                { class: "windows" },
                (o.windows || []).map((w) =>
                  el(
                    "span",
                    {
                      class: `window ${w.ok ? "ok" : "bad"}`,
                      "data-window": w.window,
                      title: `error ratio ${fmtPct(w.errorRatio)} (${fmtValue(w.bad)} bad of ${fmtValue(w.total)})`,
                    },
                    el("span", { class: "window-name", text: w.window }),
                    el("span", { class: "burn", text: `${fmtValue(w.burnRate)}×` }),
                  ),
                ),
              ),
            ),
            el("td", { class: "alerts" }, alerts.length ? alerts.map((a) => el("span", { class: "alert", "data-alert": a, text: a })) : el("span", { class: "quiet", text: "none" })),
          );
        }),
      ),
    ),
  );
}

// ---- errors ----

function traceHash(id) {
  return "#trace/" + encodeURIComponent(id);
}

function renderErrors(errors) {
  if (!errors.length) {
    ui.errors.replaceChildren(el("tr", null, el("td", { colspan: "5", class: "empty", text: "No recent errors." })));
    return;
  }
  ui.errors.replaceChildren(
    ...errors.map((e) => {
      const attrs = Object.entries(e.attrs || {})
        .map(([k, v]) => `${k}=${v}`)
        .join(" ");
      const message = e.traceId ? el("a", { href: traceHash(e.traceId), text: e.message }) : e.message;
      return el(
        "tr",
        {
          class: `level-${(e.level || "").toLowerCase()}` + (e.traceId ? " has-trace" : ""),
          "data-trace": e.traceId || null,
          title: attrs || null,
          on: e.traceId ? { click: (ev) => openFromRow(ev, e.traceId) } : null,
        },
        el("td", { class: "time", title: e.time, text: fmtTime(e.time, true) }),
        el("td", { text: e.level || "" }),
        el("td", { text: e.region || "" }),
        el("td", { class: "message" }, message),
        el("td", { class: "trace-ref", text: e.traceId ? e.traceId.slice(0, 8) : "" }),
      );
    }),
  );
}

// openFromRow opens the trace of a clicked row through the URL fragment, so
// that it can be shared and the back button closes it.
function openFromRow(ev, id) {
  ev.preventDefault();
  const hash = traceHash(id);
  if (location.hash === hash) route();
  else location.hash = hash;
}

// ---- trace waterfall ----

let traceRequest = null; // the AbortController of the fetch in flight

function route() {
  const m = /^#trace\/(.+)$/.exec(location.hash);
  if (!m) {
    closeTrace();
    return;
  }
  let id;
  try {
    id = decodeURIComponent(m[1]);
  } catch {
    closeTrace();
    return;
  }
  openTrace(id);
}

async function openTrace(id) {
  if (traceRequest) traceRequest.abort();
  const request = new AbortController();
  traceRequest = request;
  ui.tracePanel.hidden = false;
  ui.tracePanel.dataset.trace = id;
  ui.traceID.textContent = id;
  ui.traceStatus.textContent = "loading…";
  ui.waterfall.replaceChildren();
  ui.tracePanel.scrollIntoView({ block: "nearest" });
  try {
    const url = new URL("../traces/" + encodeURIComponent(id), document.baseURI);
    const resp = await fetch(url, { headers: { Accept: "application/json" }, signal: request.signal });
    const body = await resp.json().catch(() => null);
    if (request !== traceRequest) return;
    if (!resp.ok) {
      const why = body && (body.detail || body.title);
      ui.traceStatus.textContent = `could not load the trace: ${resp.status}${why ? " " + why : ""}`;
      return;
    }
    renderWaterfall((body && body.spans) || []);
  } catch (err) {
    if (request !== traceRequest || (err && err.name === "AbortError")) return;
    ui.traceStatus.textContent = `could not load the trace: ${err && err.message ? err.message : err}`;
  }
}

function closeTrace() {
  if (traceRequest) traceRequest.abort();
  traceRequest = null;
  ui.tracePanel.hidden = true;
  delete ui.tracePanel.dataset.trace;
  ui.waterfall.replaceChildren();
}

// renderWaterfall draws one row per span, children under their parent in
// start order, each bar placed by its start and duration relative to the
// start of the trace.
function renderWaterfall(raw) {
  const spans = raw
    .map((s) => {
      const t0 = parseTime(s.start);
      let t1 = finite(s.durationMs) ? t0 + s.durationMs : parseTime(s.end);
      if (!finite(t1) || t1 < t0) t1 = t0;
      return { ...s, t0, t1 };
    })
    .filter((s) => finite(s.t0));
  if (!spans.length) {
    ui.traceStatus.textContent = "The trace has no spans.";
    return;
  }
  const start = Math.min(...spans.map((s) => s.t0));
  const end = Math.max(...spans.map((s) => s.t1));
  const total = Math.max(end - start, 0.001);
  ui.traceStatus.textContent = `${spans.length} spans, ${fmtMs(end - start)}`;

  const ids = new Set(spans.map((s) => s.spanId));
  const children = new Map();
  for (const s of spans) {
    const parent = s.parentId && ids.has(s.parentId) && s.parentId !== s.spanId ? s.parentId : "";
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(s);
  }
  for (const list of children.values()) list.sort((a, b) => a.t0 - b.t0);
  const ordered = [];
  const seen = new Set();
  const walk = (parent, depth) => {
    for (const s of children.get(parent) || []) {
      if (seen.has(s)) continue;
      seen.add(s);
      ordered.push([s, depth]);
      walk(s.spanId, depth + 1);
    }
  };
  walk("", 0);
  for (const s of spans) if (!seen.has(s)) ordered.push([s, 0]); // spans caught in a parent cycle

  const axis = el("div", { class: "span-row axis", "aria-hidden": "true" }, el("div", { class: "span-label" }), el("div", { class: "span-track" }, [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const tick = el("span", { class: "tick", text: fmtMs(total * f) });
    tick.style.left = `${f * 100}%`;
    return tick;
  })), el("div", { class: "span-dur" }));

  const rows = ordered.map(([s, depth]) => {
    const region = (s.attributes && s.attributes.region) || "";
    const dur = s.t1 - s.t0;
    const bar = el("div", {
      class: "span-bar",
      title: [s.name, region, fmtMs(dur), s.status, s.statusMessage].filter(Boolean).join(" · "),
    });
    bar.style.left = `${((s.t0 - start) / total) * 100}%`;
    bar.style.width = `${Math.max((dur / total) * 100, 0.3)}%`;
    const label = el("div", { class: "span-label" }, el("span", { class: "span-name", text: s.name }), region ? el("span", { class: "span-region", text: region }) : null);
    label.style.paddingLeft = `${depth * 14}px`;
    return el(
      "div",
      { class: "span-row" + (s.status === "error" ? " span-error" : ""), "data-span-id": s.spanId, "data-status": s.status || "" },
      label,
      el("div", { class: "span-track" }, bar),
      el("div", { class: "span-dur", text: fmtMs(dur) }),
    );
  });
  ui.waterfall.replaceChildren(axis, ...rows);
}

ui.traceClose.addEventListener("click", () => {
  history.replaceState(null, "", location.pathname + location.search);
  closeTrace();
});
window.addEventListener("hashchange", route);

// ---- the event stream ----

// last holds the JSON of what each section showed, so an unchanged
// section is not rebuilt (and keeps its scroll and focus).
const last = {};
function changed(key, value) {
  const json = JSON.stringify(value);
  if (last[key] === json) return false;
  last[key] = json;
  return true;
}

let lastUpdate = 0;

function render(snap) {
  lastUpdate = Date.now();
  ui.updated.classList.remove("stale");
  showProblem("");
  renderSystem(snap);
  const regions = snap.regions || [];
  const pops = snap.pops || [];
  if (changed("map", [regions, pops])) renderRegions(regions, pops);
  if (changed("release", [snap.release || null, snap.releaseProblem || ""])) renderRelease(snap.release || null, snap.releaseProblem || "");
  if (changed("scaling", snap.scaling || null)) renderScaling(snap.scaling || null);
  if (changed("health", snap.health || null)) renderHealth(snap.health || null);
  const slos = snap.slos || [];
  if (changed("slos", slos)) renderSLOs(slos);
  const errors = snap.errors || [];
  if (changed("errors", errors)) renderErrors(errors);
}

function connect() {
  setConn("connecting");
  const es = new EventSource("events");
  es.addEventListener("open", () => setConn("live"));
  es.addEventListener("snapshot", (ev) => {
    let snap;
    try {
      snap = JSON.parse(ev.data);
    } catch {
      showProblem("the server sent a malformed snapshot");
      return;
    }
    setConn("live");
    render(snap);
  });
  // "error" is both the server's event (a MessageEvent whose data is a
  // problem document: the snapshot could not be taken, the stream goes on)
  // and EventSource's own connection error (a plain Event).
  es.addEventListener("error", (ev) => {
    if (ev instanceof MessageEvent) {
      let p = null;
      try {
        p = JSON.parse(ev.data);
      } catch {}
      showProblem(`snapshot failed: ${(p && (p.detail || p.title)) || "unknown error"}`);
      return;
    }
    if (es.readyState === EventSource.CLOSED) {
      // The server refused the stream; EventSource does not retry that.
      setConn("reconnecting", "reconnecting…");
      setTimeout(connect, RECONNECT_MS);
      return;
    }
    setConn("reconnecting", "reconnecting…"); // EventSource retries by itself
  });
}

setInterval(() => {
  if (lastUpdate && Date.now() - lastUpdate > STALE_AFTER_MS) ui.updated.classList.add("stale");
}, 1000);

connect();
route();
