// DOM helpers: every text becomes a text node, never parsed as HTML, so no
// value from the API can become markup.

/** el('tag', {attr: value, onclick: fn}, child, 'text', ...) */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else if (name === 'class') node.className = value;
    else if (value === true) node.setAttribute(name, '');
    else node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A labelled input: the label names it for screen readers and tests. */
export function field(label, input) {
  const id = input.id || `f-${label.toLowerCase().replace(/[^a-z0-9]+/g, '-')}-${++fieldSeq}`;
  input.id = id;
  return el('div', { class: 'field' }, el('label', { for: id }, label), input);
}
let fieldSeq = 0;

export function table(headers, rows, caption) {
  return el('table', {},
    caption ? el('caption', {}, caption) : null,
    el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows));
}

export function when(ts) {
  if (!ts) return '';
  return ts.replace('T', ' ').replace(/\.\d+/, '').replace('Z', ' UTC');
}

export function clear(node) {
  node.replaceChildren();
  return node;
}
