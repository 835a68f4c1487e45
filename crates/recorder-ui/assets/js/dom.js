// Building DOM nodes without innerHTML: every string becomes a text node,
// so recorded data can never inject markup.

/**
 * Creates an element. `attrs` keys: `class`, `text`, `on<event>` (function),
 * `dataset` (object), any other key is set as an attribute (skipped when
 * null/undefined/false; `true` sets it empty).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = String(value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

/** Appends children (nodes, strings, numbers, nested arrays; null skipped). */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A definition list from [term, value] pairs; pairs with empty values are skipped. */
export function definitions(pairs, attrs = {}) {
  const dl = h('dl', { class: 'facts', ...attrs });
  for (const [term, value] of pairs) {
    if (value === null || value === undefined || value === '') continue;
    dl.append(h('dt', { text: term }), h('dd', {}, value));
  }
  return dl;
}
