// Tributary's API reference page (/docs): renders /openapi.json for people — operations by
// tag with their parameters, bodies and responses ($ref resolved) — and sends a request
// from each operation's "Try it" form with the key the user gave. No framework, no build
// step, nothing fetched from elsewhere. See mod.rs for the contract.
"use strict";

const KEY_STORE = "tributary.key"; // shared with the live page (same tab, same origin)
const METHODS = ["get", "put", "post", "delete", "patch", "head", "options"];
const MAX_DEPTH = 6;

const $ = (id) => document.getElementById(id);
let doc = null;

// ---------------------------------------------------------------- DOM helpers

// An element with a class (optional) and children (strings become text nodes).
function el(tag, cls, ...children) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

// Markdown-lite: `code` spans become <code>; everything else is text.
function prose(text, cls = "") {
  const p = el("p", cls);
  String(text || "").split(/(`[^`]*`)/).forEach((part) => {
    if (part.startsWith("`") && part.endsWith("`") && part.length > 1) {
      p.append(el("code", null, part.slice(1, -1)));
    } else if (part) {
      p.append(document.createTextNode(part));
    }
  });
  return p;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

// ---------------------------------------------------------------- the key

function showKeyState() {
  $("key-state").textContent = sessionStorage.getItem(KEY_STORE) ? "a key is set" : "no key set";
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const key = $("key-input").value.trim();
  if (key) sessionStorage.setItem(KEY_STORE, key);
  $("key-input").value = "";
  showKeyState();
});

$("forget-key").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_STORE);
  showKeyState();
});

// ---------------------------------------------------------------- $ref and schemas

// The object a local `$ref` ("#/components/...") points to, or undefined.
function lookup(ref) {
  if (typeof ref !== "string" || !ref.startsWith("#/")) return undefined;
  return ref.slice(2).split("/").reduce((node, raw) => {
    const key = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    return node && typeof node === "object" ? node[key] : undefined;
  }, doc);
}

// Follows `$ref`s; returns [resolved object, name of the last ref or null].
function resolve(node) {
  let name = null;
  for (let i = 0; node && node.$ref && i < 10; i++) {
    name = node.$ref.split("/").pop();
    node = lookup(node.$ref);
  }
  return [node || {}, name];
}

function typeOf(schema) {
  if (schema.const !== undefined) return "const " + JSON.stringify(schema.const);
  let type = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || "";
  if (type === "array" && schema.items) {
    const [items, name] = resolve(schema.items);
    type = `array of ${name || typeOf(items) || "any"}`;
  }
  if (schema.format) type += ` (${schema.format})`;
  if (schema.enum) type += " one of " + schema.enum.map((v) => JSON.stringify(v)).join(", ");
  const bounds = [];
  for (const k of ["minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "pattern", "default"]) {
    if (schema[k] !== undefined) bounds.push(`${k} ${JSON.stringify(schema[k])}`);
  }
  if (bounds.length) type += ` [${bounds.join(", ")}]`;
  return type;
}

// A nested list describing `schema`; `seen` holds the refs on the way here (cycles stop).
function schemaTree(schema, depth = 0, seen = new Set(), root = true) {
  const list = el("ul", root ? "schema root" : "schema");
  list.append(schemaItem(null, schema, false, depth, seen));
  return list;
}

function schemaItem(propName, raw, required, depth, seen) {
  const [schema, refName] = resolve(raw);
  const li = el("li");
  if (propName !== null) li.append(el("span", "name", propName), " ");
  const type = typeOf(schema);
  const combined = schema.oneOf || schema.anyOf || schema.allOf;
  const label = [refName, type].filter(Boolean).join(": ") || (combined ? "" : "any");
  if (label) li.append(el("span", "type", label));
  if (required) li.append(" ", el("span", "req", "required"));
  if (schema.description) li.append(" ", el("span", "desc", "— " + schema.description));
  const cycle = refName && seen.has(refName);
  if (depth >= MAX_DEPTH || cycle) return li;
  const next = new Set(seen);
  if (refName) next.add(refName);
  for (const combo of ["oneOf", "anyOf", "allOf"]) {
    if (!Array.isArray(schema[combo])) continue;
    const sub = el("ul", "schema");
    sub.append(el("li", "desc", combo === "allOf" ? "all of:" : "one of:"));
    for (const alt of schema[combo]) sub.append(schemaItem(null, alt, false, depth + 1, next));
    li.append(sub);
  }
  if (schema.properties) {
    const sub = el("ul", "schema");
    const req = new Set(schema.required || []);
    for (const [name, prop] of Object.entries(schema.properties)) {
      sub.append(schemaItem(name, prop, req.has(name), depth + 1, next));
    }
    li.append(sub);
  }
  if (schema.items && (resolve(schema.items)[0].properties || resolve(schema.items)[0].oneOf)) {
    const sub = el("ul", "schema");
    sub.append(schemaItem("items", schema.items, false, depth + 1, next));
    li.append(sub);
  }
  if (schema.additionalProperties && typeof schema.additionalProperties === "object") {
    const sub = el("ul", "schema");
    sub.append(schemaItem("(any key)", schema.additionalProperties, false, depth + 1, next));
    li.append(sub);
  }
  return li;
}

function contentBlock(content) {
  const box = el("div");
  for (const [media, entry] of Object.entries(content || {})) {
    box.append(el("div", "media", media));
    if (entry.schema) box.append(schemaTree(entry.schema));
  }
  return box;
}

// ---------------------------------------------------------------- operations

function parametersOf(pathItem, op) {
  const byKey = new Map();
  for (const raw of [...(pathItem.parameters || []), ...(op.parameters || [])]) {
    const [p] = resolve(raw);
    if (p.name) byKey.set(p.in + ":" + p.name, p);
  }
  return [...byKey.values()];
}

function needsKey(op) {
  const security = op.security !== undefined ? op.security : doc.security;
  return Array.isArray(security) && security.length > 0;
}

function parametersTable(params) {
  const table = el("table");
  table.append(el("thead", null, el("tr", null, el("th", null, "name"), el("th", null, "in"),
    el("th", null, "type"), el("th", null, "description"))));
  const body = el("tbody");
  for (const p of params) {
    const [schema] = resolve(p.schema || {});
    body.append(el("tr", null,
      el("td", "mono", p.name + (p.required ? " *" : "")),
      el("td", null, p.in),
      el("td", "mono", typeOf(schema)),
      el("td", null, prose(p.description || ""))));
  }
  table.append(body);
  return table;
}

function responsesBlock(responses) {
  const box = el("div");
  const codes = Object.keys(responses || {}).sort();
  for (const code of codes) {
    const [response, refName] = resolve(responses[code]);
    const ok = /^[123]/.test(code);
    const row = el("div", "response");
    const head = el("div", null, el("span", `status ${ok ? "ok" : "err"}`, code), " ");
    if (refName) head.append(el("span", "type", refName), " ");
    row.append(head, prose(response.description || ""));
    if (response.headers) {
      const names = Object.keys(response.headers);
      if (names.length) row.append(el("div", "media", "headers: " + names.join(", ")));
    }
    if (response.content) row.append(contentBlock(response.content));
    box.append(row);
  }
  return box;
}

function operationCard(path, method, pathItem, op) {
  const card = el("details", "operation");
  card.id = `${method}-${path}`; // a link to it: /docs#post-/v1/streams/{stream}/events
  card.dataset.path = path;
  card.dataset.method = method.toUpperCase();
  const summary = el("summary", null,
    el("span", `method ${method}`, method.toUpperCase()),
    el("span", "path", path),
    el("span", null, op.summary || ""));
  if (!needsKey(op)) summary.append(el("span", "open-badge", "open (no key)"));
  card.append(summary);
  const body = el("div", "operation-body");
  if (op.description) body.append(prose(op.description));
  const params = parametersOf(pathItem, op);
  if (params.length) body.append(el("h3", null, "Parameters"), parametersTable(params));
  if (op.requestBody) {
    const [rb] = resolve(op.requestBody);
    body.append(el("h3", null, "Request body" + (rb.required ? " (required)" : "")));
    if (rb.description) body.append(prose(rb.description, "muted"));
    body.append(contentBlock(rb.content));
  }
  body.append(el("h3", null, "Responses"), responsesBlock(op.responses));
  body.append(tryForm(path, method, params, op));
  card.append(body);
  return card;
}

// ---------------------------------------------------------------- try it

function tryForm(path, method, params, op) {
  const form = el("form", "try");
  form.append(el("h3", null, "Try it"));
  const inputs = [];
  for (const p of params) {
    const input = el("input");
    input.name = p.name;
    input.placeholder = p.schema && p.schema.default !== undefined ? String(p.schema.default) : "";
    input.required = Boolean(p.required);
    inputs.push([p, input]);
    form.append(el("label", null, el("span", "mono", `${p.name} (${p.in})`), input));
  }
  let media = null;
  let text = null;
  if (op.requestBody) {
    const [rb] = resolve(op.requestBody);
    media = el("select");
    for (const type of Object.keys(rb.content || {})) media.append(el("option", null, type));
    text = el("textarea");
    text.spellcheck = false;
    text.value = exampleBody(rb);
    form.append(el("label", null, el("span", null, "Content-Type"), media), text);
  }
  const send = el("button", null, "Send");
  send.type = "submit";
  const out = el("pre");
  out.hidden = true;
  form.append(send, out);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    sendRequest(path, method, inputs, op, media, text, out);
  });
  return form;
}

function exampleBody(rb) {
  for (const entry of Object.values(rb.content || {})) {
    if (entry.example !== undefined) return JSON.stringify(entry.example, null, 2);
    const examples = Object.values(entry.examples || {});
    if (examples.length && examples[0].value !== undefined) {
      return JSON.stringify(examples[0].value, null, 2);
    }
  }
  return "";
}

async function sendRequest(path, method, inputs, op, media, text, out) {
  let url = path;
  const query = new URLSearchParams();
  const headers = {};
  for (const [p, input] of inputs) {
    const value = input.value.trim();
    if (!value) continue;
    if (p.in === "path") url = url.replace(`{${p.name}}`, encodeURIComponent(value));
    else if (p.in === "query") query.append(p.name, value);
    else if (p.in === "header") headers[p.name] = value;
  }
  if ([...query].length) url += "?" + query.toString();
  const key = sessionStorage.getItem(KEY_STORE);
  if (needsKey(op) && key) headers.Authorization = "Bearer " + key;
  const init = { method: method.toUpperCase(), headers, cache: "no-store" };
  if (media && text) {
    headers["Content-Type"] = media.value;
    init.body = text.value;
  }
  out.hidden = false;
  out.textContent = `${init.method} ${url} …`;
  try {
    const response = await fetch(url, init);
    const type = response.headers.get("content-type") || "";
    let body = await response.text();
    if (/json/.test(type)) {
      try { body = JSON.stringify(JSON.parse(body), null, 2); } catch (_) { /* as sent */ }
    }
    const lines = [`${init.method} ${url}`, `${response.status} ${response.statusText}`];
    for (const name of ["content-type", "location", "retry-after", "ratelimit", "x-request-id"]) {
      const value = response.headers.get(name);
      if (value) lines.push(`${name}: ${value}`);
    }
    out.textContent = lines.join("\n") + "\n\n" + body;
  } catch (err) {
    out.textContent = `${init.method} ${url}\nrequest failed: ${err.message}`;
  }
}

// ---------------------------------------------------------------- the page

function render() {
  $("title").textContent = (doc.info && doc.info.title) || "API";
  $("version").textContent = `OpenAPI ${doc.openapi || "?"} · version ${(doc.info && doc.info.version) || "?"}`;
  document.title = $("title").textContent;
  $("description").replaceChildren(prose(doc.info && doc.info.description));

  // Operations by tag: the document's tag order first, then any other tag, then untagged.
  const groups = new Map((doc.tags || []).map((t) => [t.name, []]));
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const tags = op.tags && op.tags.length ? op.tags : ["other"];
      for (const tag of tags) {
        if (!groups.has(tag)) groups.set(tag, []);
        groups.get(tag).push(operationCard(path, method, item, op));
      }
    }
  }
  const toc = $("toc");
  const holder = $("operations");
  toc.replaceChildren();
  holder.replaceChildren();
  for (const [tag, cards] of groups) {
    if (!cards.length) continue;
    const section = el("section", "tag");
    section.id = "tag-" + tag;
    section.append(el("h2", null, tag));
    const meta = (doc.tags || []).find((t) => t.name === tag);
    if (meta && meta.description) section.append(prose(meta.description, "muted tag-description"));
    section.append(...cards);
    holder.append(section);
    const link = el("a", null, tag);
    link.href = "#tag-" + tag;
    toc.append(link);
  }

  const shared = $("component-responses");
  shared.replaceChildren(responsesBlock((doc.components && doc.components.responses) || {}));
  $("state").textContent = `${holder.querySelectorAll("details.operation").length} operations`;
  openLinked();
  document.body.dataset.ready = "true";
}

// Opens (and shows) the operation the address's fragment names, if any.
function openLinked() {
  const id = decodeURIComponent(location.hash.slice(1));
  const card = id && document.getElementById(id);
  if (card && card.tagName === "DETAILS") {
    card.open = true;
    card.scrollIntoView();
  }
}

window.addEventListener("hashchange", openLinked);

async function load() {
  showKeyState();
  try {
    const response = await fetch("/openapi.json", { cache: "no-store" });
    if (!response.ok) throw new Error(`/openapi.json: ${response.status} ${response.statusText}`);
    doc = await response.json();
    render();
    showError("");
  } catch (err) {
    $("state").textContent = "failed";
    showError(err.message);
  }
}

load();
