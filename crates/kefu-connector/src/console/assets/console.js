// The operator console. Every piece of data is put on the page with textContent (never as
// HTML), so a message that contains <script> is shown as text. The page polls the relay while
// it is open; every action carries the session's CSRF token and an id of its own, so that the
// same click sent twice does nothing more.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const OPERATOR = document.querySelector('meta[name="operator"]').content;
const POLL_MS = 3000;

// Elements, built from text only.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "on") {
      for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function actionId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "";
}

function duration(ms) {
  if (ms === null || ms === undefined) return "";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  const h = Math.floor(s / 3600);
  return h + " h " + Math.floor((s % 3600) / 60) + " min";
}

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.status === 401) {
    location.assign("/console/login");
    throw new Error("logged out");
  }
  const body = await response.json();
  if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
  return body;
}

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
    body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error((answer.error && answer.error.message) || response.statusText);
  return answer;
}

function flash(text) {
  const node = document.getElementById("flash");
  if (node) node.textContent = text;
}

function problem(text) {
  document.getElementById("problem").textContent = text || "";
}

// The state of the page between polls.
const page = {
  route: "overview",
  filters: { account: "", state: "", reason: "", since: "", until: "", resolved: false },
  cursors: [],
  selected: new Set(),
  accounts: [],
  userBefore: { job: null, event: null },
  nextBefore: null,
};

function statusBadge(status) {
  return el("span", { class: "badge " + status }, status);
}

function userLink(account, openid) {
  return el("a", { href: "#/user/" + encodeURIComponent(account) + "/" + encodeURIComponent(openid) }, openid);
}

// Overview -----------------------------------------------------------------------------------

const STATES = ["queued", "sending", "accepted", "delivered", "failed", "ambiguous"];

function chart(title, minutes, series, unit) {
  const width = 480, height = 140, pad = 28;
  const now = Date.now();
  const start = now - 3600 * 1000;
  const max = Math.max(1, ...minutes.flatMap((m) => series.map((s) => s.value(m) || 0)));
  const x = (ms) => pad + ((ms - start) / (3600 * 1000)) * (width - 2 * pad);
  const y = (v) => height - pad - (v / max) * (height - 2 * pad);
  const lines = series.map((s) => {
    const points = minutes
      .filter((m) => s.value(m) !== null)
      .map((m) => x(m.at_ms + 30000).toFixed(1) + "," + y(s.value(m)).toFixed(1))
      .join(" ");
    return svg("polyline", { points, fill: "none", stroke: s.color, "stroke-width": 2 });
  });
  const dots = series.flatMap((s) =>
    minutes
      .filter((m) => s.value(m) !== null)
      .map((m) => svg("circle", { cx: x(m.at_ms + 30000).toFixed(1), cy: y(s.value(m)).toFixed(1), r: 2.5, fill: s.color })),
  );
  return el(
    "figure",
    { class: "chart" },
    el("figcaption", {}, title, " ", ...series.map((s) => el("span", { class: "legend " + s.css }, s.name))),
    svg(
      "svg",
      { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title },
      svg("line", { x1: pad, y1: height - pad, x2: width - pad, y2: height - pad, stroke: "#999" }),
      svg("line", { x1: pad, y1: pad, x2: pad, y2: height - pad, stroke: "#999" }),
      svg("text", { x: 2, y: pad + 4, "font-size": 10 }, max.toFixed(unit === "ms" ? 1 : 0)),
      svg("text", { x: 2, y: height - pad, "font-size": 10 }, "0"),
      svg("text", { x: pad, y: height - 8, "font-size": 10 }, "-60 min"),
      svg("text", { x: width - pad - 20, y: height - 8, "font-size": 10 }, "now"),
      lines,
      dots,
    ),
  );
}

function tokenCell(token) {
  if (!token) return el("td", { class: "muted" }, "—");
  const now = Date.now();
  return el(
    "td",
    { class: "token" },
    token.expires_at_ms ? el("div", {}, "expires in " + duration(token.expires_at_ms - now)) : el("div", { class: "muted" }, "no token yet"),
    token.last_refresh_ms ? el("div", { class: "muted" }, "refreshed " + when(token.last_refresh_ms)) : null,
    token.last_error ? el("div", { class: "error" }, "last error " + when(token.last_error_ms) + ": " + token.last_error) : null,
  );
}

async function renderOverview(view) {
  const data = await getJSON("/console/api/overview");
  page.accounts = data.accounts.map((a) => a.name);
  const rows = data.accounts.map((account) =>
    el(
      "tr",
      { dataset: { account: account.name } },
      el("th", {}, account.name),
      STATES.map((state) =>
        el("td", { class: "count " + state, dataset: { state } }, String(account.states[state])),
      ),
      el("td", { class: "count" }, String(account.needperson) + (account.needperson_more ? "+" : "")),
      tokenCell(account.token),
    ),
  );
  const minutes = data.last_hour;
  show(
    view,
    el("h1", {}, "Overview"),
    el(
      "p",
      { id: "health" },
      "Store: " + data.store.backend + ", ",
      el("span", { class: data.store.healthy ? "ok" : "error", id: "store-health" }, data.store.healthy ? "healthy" : "NOT ANSWERING"),
      " (" + data.store.ping_ms.toFixed(1) + " ms). Webhook backlog: ",
      el("span", { id: "webhook-backlog" }, String(data.webhook_backlog)),
      " events.",
    ),
    el(
      "table",
      { id: "accounts" },
      el("thead", {}, el("tr", {}, el("th", {}, "account"), STATES.map((s) => el("th", {}, s)), el("th", {}, "needperson"), el("th", {}, "access token"))),
      el("tbody", {}, rows),
    ),
    el(
      "div",
      { class: "charts" },
      chart("Deliveries per minute (this relay)", minutes, [
        { name: "taken", css: "taken", color: "#2a7", value: (m) => m.delivered },
        { name: "not taken", css: "nottaken", color: "#c33", value: (m) => m.failed },
      ]),
      chart("Platform latency, ms (this relay)", minutes, [
        { name: "average", css: "latency", color: "#36c", value: (m) => (m.requests ? m.latency_ms_sum / m.requests : null) },
      ], "ms"),
    ),
  );
}

// Queue --------------------------------------------------------------------------------------

async function renderQueue(view) {
  const data = await getJSON("/console/api/queue");
  show(
    view,
    el("h1", {}, "Waiting for a person"),
    data.waiting.length === 0
      ? el("p", { id: "queue-empty" }, "Nobody is waiting.")
      : el(
          "table",
          { id: "queue" },
          el("thead", {}, el("tr", {}, el("th", {}, "account"), el("th", {}, "user"), el("th", {}, "waiting since"), el("th", {}, "waited"))),
          el(
            "tbody",
            {},
            data.waiting.map((w) =>
              el("tr", {}, el("td", {}, w.account), el("td", {}, userLink(w.account, w.openid)), el("td", {}, when(w.since_ms)), el("td", {}, duration(w.waited_ms))),
            ),
          ),
        ),
  );
}

// Messages -----------------------------------------------------------------------------------

function messagesQuery() {
  const f = page.filters;
  const query = new URLSearchParams();
  if (f.account) query.set("account", f.account);
  if (f.state) query.set("state", f.state);
  if (f.reason) query.set("reason", f.reason);
  if (f.since) query.set("since_ms", String(new Date(f.since).getTime()));
  if (f.until) query.set("until_ms", String(new Date(f.until).getTime()));
  if (f.resolved) query.set("resolved", "true");
  const before = page.cursors[page.cursors.length - 1];
  if (before) query.set("before", String(before));
  return query.toString();
}

async function resend(ids) {
  const answer = await post("/console/api/resend", { ids, action: actionId() });
  const queued = answer.results.filter((r) => r.result === "queued").length;
  const refused = answer.results.filter((r) => r.result !== "queued" && r.result !== "already_queued");
  flash(queued + " queued again" + (refused.length ? "; not resent: " + refused.map((r) => r.id + " (" + (r.state || r.result) + ")").join(", ") : ""));
  page.selected.clear();
  await refresh();
}

async function resolve(ids) {
  const answer = await post("/console/api/resolve", { ids, action: actionId() });
  flash(answer.resolved.length + " resolved" + (answer.unchanged.length ? "; unchanged: " + answer.unchanged.join(", ") : ""));
  page.selected.clear();
  await refresh();
}

function act(work) {
  return (event) => {
    event.preventDefault();
    work().catch((error) => flash("Failed: " + error.message));
  };
}

// What a message says, read from the body it goes out with: the <msg> of a Dialogue sendmsg
// (parsed as XML, which runs nothing), the text of a JSON body, else the body itself.
function messageText(payload) {
  let text = payload;
  try {
    if (payload.startsWith("<xml>")) {
      const msg = new DOMParser().parseFromString(payload, "application/xml").querySelector("msg");
      if (msg) text = msg.textContent;
    } else if (payload.startsWith("{")) {
      const body = JSON.parse(payload);
      const said = (body.text && body.text.content) ?? body.content ?? body.msg ?? body.message;
      if (typeof said === "string") text = said;
    }
  } catch (_) {
    text = payload;
  }
  return text.length > 400 ? text.slice(0, 400) + "…" : text;
}

function markText(mark) {
  if (!mark) return "";
  return (mark.action === "resend" ? "resent by " : "resolved by ") + mark.operator + ", " + when(mark.at_ms);
}

function resendable(m) {
  return m.status === "failed" || m.status === "ambiguous";
}

// The Resend button of message `m`, if it may be resent.
function resendButton(m) {
  return resendable(m)
    ? el("button", { type: "button", class: "resend", dataset: { jobId: String(m.id) }, on: { click: act(() => resend([m.id])) } }, "Resend")
    : null;
}

function messageRow(m) {
  return el(
    "tr",
    { dataset: { jobId: String(m.id) }, class: "job" },
    el("td", {}, el("input", {
      type: "checkbox",
      class: "pick",
      "aria-label": "select message " + m.id,
      checked: page.selected.has(m.id),
      on: {
        change: (e) => {
          if (e.target.checked) page.selected.add(m.id);
          else page.selected.delete(m.id);
          selectedCount();
        },
      },
    })),
    el("td", {}, String(m.id)),
    el("td", {}, m.account),
    el("td", {}, userLink(m.account, m.openid)),
    el("td", { class: "status" }, statusBadge(m.status)),
    el("td", { class: "attempts" }, String(m.attempts)),
    el("td", { class: "code" }, m.error_code === undefined ? "" : String(m.error_code)),
    el("td", { class: "reason" }, m.reason || ""),
    el("td", { class: "message" }, m.error_message || ""),
    el("td", { class: "payload" }, el("code", {}, messageText(m.payload))),
    el("td", {}, when(m.updated_at_ms)),
    el("td", { class: "mark" }, markText(m.mark)),
    el(
      "td",
      { class: "actions" },
      resendButton(m),
      resendable(m) && !(m.mark && m.mark.action === "resolve")
        ? el("button", { type: "button", class: "resolve", dataset: { jobId: String(m.id) }, on: { click: act(() => resolve([m.id])) } }, "Resolve")
        : null,
    ),
  );
}

const MESSAGE_HEADINGS = ["id", "account", "user", "status", "attempts", "code", "reason", "error", "body", "changed", "operator", ""];

function filterForm() {
  const f = page.filters;
  const field = (label, input) => el("label", {}, label, " ", input);
  const account = el("select", { name: "account", id: "filter-account" }, el("option", { value: "" }, "any"), page.accounts.map((a) => el("option", { value: a, selected: a === f.account }, a)));
  const state = el("select", { name: "state", id: "filter-state" }, [["", "failed or ambiguous"], ["failed", "failed"], ["ambiguous", "ambiguous"]].map(([v, t]) => el("option", { value: v, selected: v === f.state }, t)));
  const reason = el("input", { name: "reason", id: "filter-reason", value: f.reason, placeholder: "e.g. window_closed", size: 16 });
  const since = el("input", { name: "since", type: "datetime-local", value: f.since });
  const until = el("input", { name: "until", type: "datetime-local", value: f.until });
  const resolved = el("input", { name: "resolved", type: "checkbox", checked: f.resolved });
  return el(
    "form",
    {
      id: "filters",
      on: {
        submit: (event) => {
          event.preventDefault();
          Object.assign(page.filters, {
            account: account.value,
            state: state.value,
            reason: reason.value.trim(),
            since: since.value,
            until: until.value,
            resolved: resolved.checked,
          });
          page.cursors = [];
          page.selected.clear();
          refresh();
        },
      },
    },
    field("Account", account),
    field("State", state),
    field("Reason", reason),
    field("Changed since", since),
    field("until", until),
    field("Include resolved", resolved),
    el("button", { type: "submit" }, "Filter"),
  );
}

function selectedCount() {
  const node = document.getElementById("selected-count");
  if (node) node.textContent = page.selected.size ? page.selected.size + " selected" : "";
}

function turnPage(move) {
  return act(async () => {
    move();
    page.selected.clear();
    await refresh();
  });
}

function messagesToolbar() {
  const selectedIds = () => Array.from(page.selected);
  return el(
    "div",
    { class: "toolbar" },
    el("button", { type: "button", id: "resend-selected", on: { click: act(() => resend(selectedIds())) } }, "Resend selected"),
    el("button", { type: "button", id: "resolve-selected", on: { click: act(() => resolve(selectedIds())) } }, "Resolve selected"),
    el("span", { id: "selected-count" }),
    el("button", { type: "button", id: "newer", on: { click: turnPage(() => page.cursors.pop()) } }, "← Newer"),
    el("button", { type: "button", id: "older", on: { click: turnPage(() => page.nextBefore && page.cursors.push(page.nextBefore)) } }, "Older →"),
  );
}

async function renderMessages(view) {
  if (page.accounts.length === 0) {
    page.accounts = (await getJSON("/console/api/overview")).accounts.map((a) => a.name);
  }
  const data = await getJSON("/console/api/messages?" + messagesQuery());
  page.nextBefore = data.next_before;
  // The form, the toolbar and the flash stay across refreshes (what the operator is typing or
  // reading stays); only the results are redrawn.
  let results = view.querySelector("#results");
  if (!results) {
    results = el("div", { id: "results" });
    show(view, el("h1", {}, "Failed and ambiguous messages"), filterForm(), messagesToolbar(), el("p", { id: "flash", role: "status" }), results);
  }
  view.querySelector("#newer").disabled = page.cursors.length === 0;
  view.querySelector("#older").disabled = !page.nextBefore;
  selectedCount();
  results.replaceChildren(
    data.messages.length === 0
      ? el("p", { id: "messages-empty" }, "No message matches.")
      : el(
          "table",
          { id: "messages" },
          el("thead", {}, el("tr", {}, el("th", {}, ""), MESSAGE_HEADINGS.map((h) => el("th", {}, h)))),
          el("tbody", {}, data.messages.map((m) => messageRow(m))),
        ),
  );
}

// A user's timeline --------------------------------------------------------------------------

function eventText(body) {
  try {
    const event = JSON.parse(body);
    const text = event.text ?? event.content ?? (event.msg && (event.msg.text ?? event.msg.content));
    return typeof text === "string" ? text : body;
  } catch (_) {
    return body;
  }
}

async function renderUser(view, account, openid) {
  const query = new URLSearchParams();
  // A cursor of 0 is a series read to its end: its next page is empty.
  if (page.userBefore.job !== null) query.set("before_job", page.userBefore.job);
  if (page.userBefore.event !== null) query.set("before_event", page.userBefore.event);
  const data = await getJSON("/console/api/users/" + encodeURIComponent(account) + "/" + encodeURIComponent(openid) + "?" + query);
  const items = [
    ...data.messages.map((m) => ({ at: m.created_at_ms, node: timelineMessage(m) })),
    ...data.events.map((e) => ({ at: e.received_at_ms, node: timelineEvent(e) })),
  ].sort((a, b) => b.at - a.at);
  let body = view.querySelector("#user-body");
  if (!body) {
    body = el("div", { id: "user-body" });
    show(view, el("h1", {}, "User ", el("span", { id: "user-openid" }, openid), " on ", account), el("p", { id: "session" }), el("p", { id: "flash", role: "status" }), body);
  }
  const session = data.session;
  view.querySelector("#session").replaceChildren(
    ...(session
      ? ["State: ", el("strong", {}, session.state), " since " + when(session.state_since_ms), session.agent ? ", agent " + session.agent : ""]
      : ["No session: the user never wrote to this account."]),
  );
  const paged = page.userBefore.job !== null || page.userBefore.event !== null;
  const more = data.next_before_job !== null || data.next_before_event !== null;
  body.replaceChildren(
    items.length === 0 ? el("p", {}, "Nothing more.") : el("ol", { id: "timeline" }, items.map((i) => i.node)),
    el(
      "div",
      { class: "toolbar" },
      paged ? el("button", { type: "button", id: "user-newest", on: { click: act(async () => { page.userBefore = { job: null, event: null }; await refresh(); }) } }, "← Newest") : "",
      more
        ? el("button", {
            type: "button",
            id: "user-older",
            on: { click: act(async () => { page.userBefore = { job: data.next_before_job ?? 0, event: data.next_before_event ?? 0 }; await refresh(); }) },
          }, "Older →")
        : "",
    ),
  );
}

function timelineMessage(m) {
  return el(
    "li",
    { class: "outbound job", dataset: { jobId: String(m.id) } },
    el("div", { class: "meta" }, "→ message " + m.id + " · " + when(m.created_at_ms) + " · ", el("span", { class: "status" }, statusBadge(m.status)), " · attempts " + m.attempts,
      m.error_code !== undefined ? " · code " + m.error_code : "",
      m.reason ? " · " + m.reason : "",
      m.mark ? " · " + markText(m.mark) : ""),
    m.error_message ? el("div", { class: "error" }, m.error_message) : null,
    el("pre", { class: "payload" }, messageText(m.payload)),
    resendButton(m),
  );
}

function timelineEvent(e) {
  return el(
    "li",
    { class: "inbound", dataset: { eventId: String(e.id) } },
    el("div", { class: "meta" }, "← " + e.kind + " · " + when(e.received_at_ms) + " · webhook " + e.webhook_state),
    el("pre", { class: "text" }, eventText(e.body)),
  );
}

// Puts `nodes` in `view`, leaving out the absent ones (replaceChildren would show "null").
function show(view, ...nodes) {
  view.replaceChildren(...nodes.filter((node) => node !== null && node !== undefined));
}

// Routing and polling ------------------------------------------------------------------------

function parseRoute() {
  const hash = location.hash.replace(/^#\/?/, "");
  let parts;
  try {
    parts = hash.split("/").map(decodeURIComponent);
  } catch (_) {
    return { name: "overview" };
  }
  if (parts[0] === "user" && parts.length >= 3) return { name: "user", account: parts[1], openid: parts.slice(2).join("/") };
  if (parts[0] === "queue" || parts[0] === "messages") return { name: parts[0] };
  return { name: "overview" };
}

let refreshing = null;

async function refresh() {
  if (refreshing) return refreshing;
  const view = document.getElementById("view");
  const route = parseRoute();
  for (const name of ["overview", "queue", "messages"]) {
    document.getElementById("nav-" + name).classList.toggle("current", route.name === name);
  }
  refreshing = (async () => {
    try {
      if (route.name === "queue") await renderQueue(view);
      else if (route.name === "messages") await renderMessages(view);
      else if (route.name === "user") await renderUser(view, route.account, route.openid);
      else await renderOverview(view);
      problem("");
      document.getElementById("updated").textContent = "Updated " + new Date().toLocaleTimeString();
    } catch (error) {
      problem("Could not update: " + error.message);
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

window.addEventListener("hashchange", () => {
  document.getElementById("view").replaceChildren(el("p", {}, "Loading…"));
  page.cursors = [];
  page.selected.clear();
  page.userBefore = { job: null, event: null };
  refresh();
});

document.getElementById("who").textContent = OPERATOR;
document.getElementById("logout").addEventListener("click", async () => {
  try {
    await post("/console/logout", {});
  } finally {
    location.assign("/console/login");
  }
});

refresh();
setInterval(() => {
  if (!document.hidden) refresh();
}, POLL_MS);
