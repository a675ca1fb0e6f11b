// The operator console: one page, hash-routed views over the JSON API.
import { el, field, table, when, clear } from './dom.js';
import * as api from './api.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const signoutButton = document.getElementById('signout');
const message = document.getElementById('message');

let rights = null; // { service, sys_admin, audit_admin } while signed in
let leaveView = () => {}; // stops the current view's timers and forgets its values

const VIEWS = [
  { name: 'Secrets', hash: '#/secrets', allowed: () => true },
  { name: 'Approvals', hash: '#/approvals', allowed: (r) => r.sys_admin },
  { name: 'Missing', hash: '#/missing', allowed: () => true },
  { name: 'Audit', hash: '#/audit', allowed: (r) => r.audit_admin },
  { name: 'Keys', hash: '#/keys', allowed: (r) => r.sys_admin },
];

function say(text, kind = 'info') {
  message.textContent = text;
  message.className = kind;
}

function fail(err) {
  say(err instanceof api.ApiError ? `${err.message} (${err.code})` : String(err), 'error');
}

// ---- sign-in ----

function showSignIn() {
  leaveView();
  rights = null;
  api.signOut();
  nav.hidden = true;
  signoutButton.hidden = true;
  who.textContent = '';
  const service = el('input', { name: 'service', autocomplete: 'username', required: true });
  const token = el('input', { name: 'token', type: 'password', autocomplete: 'current-password', required: true });
  const form = el('form', { class: 'card signin', 'aria-label': 'Sign in' },
    el('h2', {}, 'Sign in'),
    el('p', {}, 'Use a service identity that holds the rights you need. The token stays in this page\'s memory: reloading signs out.'),
    field('Service', service),
    field('Token', token),
    el('button', { type: 'submit' }, 'Sign in'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    api.signIn(service.value.trim(), token.value);
    token.value = '';
    try {
      rights = await api.call('GET', '/api/identity');
    } catch (err) {
      api.signOut();
      fail(err);
      return;
    }
    say('');
    showNav();
    if (!location.hash || location.hash === '#/') location.hash = '#/secrets';
    else route();
  });
  clear(main).append(form);
  service.focus();
}

function showNav() {
  const allowed = VIEWS.filter((v) => v.allowed(rights));
  clear(nav).append(...allowed.map((v) => el('a', { href: v.hash, onclick: () => say('') }, v.name)));
  nav.hidden = false;
  who.textContent = `Signed in as ${rights.service}`;
  signoutButton.hidden = false;
}

signoutButton.addEventListener('click', () => {
  say('Signed out');
  location.hash = '#/';
  showSignIn();
});

// ---- routing ----

function route() {
  if (!rights) return showSignIn();
  leaveView();
  leaveView = () => {};
  const hash = location.hash || '#/secrets';
  for (const a of nav.querySelectorAll('a')) {
    if (hash.startsWith(a.getAttribute('href'))) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const [, view, ...rest] = hash.split('/');
  const allowed = (name) => VIEWS.find((v) => v.name === name).allowed(rights);
  clear(main);
  switch (view) {
    case 'secret': return secretView(rest.map(decodeURIComponent));
    case 'new': return newSecretView();
    case 'approvals': if (allowed('Approvals')) return approvalsView(); break;
    case 'missing': return missingView();
    case 'audit': if (allowed('Audit')) return auditView(); break;
    case 'keys': if (allowed('Keys')) return keysView(); break;
    case 'secrets': return secretsView();
    default: break;
  }
  location.hash = '#/secrets';
}

window.addEventListener('hashchange', route);

function secretHash(project, path) {
  return `#/secret/${encodeURIComponent(project)}/${path.split('/').map(encodeURIComponent).join('/')}`;
}

// ---- Secrets: search and paging over the cursor API ----

const listState = { project: '', search: '', mode: 'prefix', cursors: [null], page: 0 };

async function secretsView() {
  const heading = el('h2', {}, 'Secrets');
  // Free text (a secret's project need not be registered), registered ones suggested.
  const projects = el('datalist', { id: 'project-names' });
  const project = el('input', { name: 'project', list: 'project-names', value: listState.project, placeholder: 'all projects' });
  const search = el('input', { type: 'search', name: 'search', value: listState.search, placeholder: 'path' });
  const mode = el('select', { name: 'mode' },
    el('option', { value: 'prefix' }, 'starts with'),
    el('option', { value: 'contains' }, 'contains'));
  mode.value = listState.mode;
  const results = el('div', { 'aria-live': 'polite' });
  const form = el('form', { class: 'toolbar', role: 'search' },
    field('Project', project), field('Match', mode), field('Search', search),
    el('button', { type: 'submit' }, 'Search'),
    el('a', { href: '#/new', class: 'button', role: 'button' }, 'New secret'));
  main.append(heading, form, projects, results);
  api.call('GET', '/api/projects').then((list) => {
    for (const p of list.items) projects.append(el('option', { value: p.name }));
  }).catch(fail);
  const load = async () => {
    const q = {
      project: listState.project,
      limit: 50,
      cursor: listState.cursors[listState.page],
    };
    q[listState.mode === 'contains' ? 'contains' : 'prefix'] = listState.search;
    try {
      const started = performance.now();
      const page = await api.call('GET', `/api/secrets${api.query(q)}`);
      const ms = Math.round(performance.now() - started);
      listState.cursors[listState.page + 1] = page.next_cursor || null;
      renderSecrets(results, page, ms, load);
    } catch (err) { fail(err); }
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    Object.assign(listState, { project: project.value.trim(), search: search.value.trim(), mode: mode.value, cursors: [null], page: 0 });
    load();
  });
  await load();
}

function renderSecrets(results, page, ms, load) {
  const rows = page.items.map((s) => el('tr', {},
    el('td', {}, s.project),
    el('td', {}, el('a', { href: secretHash(s.project, s.path) }, s.path)),
    el('td', {}, valueBox(s.project, s.path, s.version)),
    el('td', {}, String(s.version)),
    el('td', {}, s.type || ''),
    el('td', {}, (s.tags || []).join(', ')),
    el('td', {}, when(s.updated_at)),
    el('td', {}, s.updated_by)));
  const prev = el('button', { type: 'button', disabled: listState.page === 0 }, 'Previous page');
  const next = el('button', { type: 'button', disabled: !page.next_cursor }, 'Next page');
  prev.addEventListener('click', () => { listState.page -= 1; load(); });
  next.addEventListener('click', () => { listState.page += 1; load(); });
  clear(results).append(
    rows.length ? table(['Project', 'Path', 'Value', 'Version', 'Type', 'Tags', 'Updated at', 'Updated by'], rows)
      : el('p', {}, 'No secrets match.'),
    el('p', { class: 'pager' }, prev, ` Page ${listState.page + 1} (${ms} ms) `, next));
}

// ---- Secret: masked value, metadata, history, edit (CAS), delete/restore ----

/** The secret's metadata without reading its value: the list, narrowed to its path. */
async function secretMeta(project, path) {
  const page = await api.call('GET', `/api/secrets${api.query({ project, prefix: path, limit: 1 })}`);
  const item = page.items[0];
  return item && item.path === path ? item : null;
}

async function secretView([project, ...segments]) {
  const path = segments.join('/');
  const title = el('h2', {}, `${project} / ${path}`);
  const body = el('div');
  main.append(el('p', {}, el('a', { href: '#/secrets' }, '← Secrets')), title, body);
  let meta;
  try {
    meta = await secretMeta(project, path);
  } catch (err) { fail(err); return; }
  if (!meta) {
    body.append(
      el('p', {}, 'No live secret at this path (or you may not list it). One deleted within the recovery window can be restored. '),
      restoreButton(body, project, path));
    return;
  }
  renderSecret(body, project, path, meta);
}

function valueBox(project, path, version) {
  // The plaintext enters the page only here, after Reveal, and leaves on Hide.
  const out = el('output', { class: 'value masked', 'aria-label': `Value of version ${version}` }, '••••••••');
  const button = el('button', { type: 'button', 'aria-pressed': 'false' }, 'Reveal');
  let shown = false;
  const hide = () => {
    shown = false;
    out.textContent = '••••••••';
    out.className = 'value masked';
    button.textContent = 'Reveal';
    button.setAttribute('aria-pressed', 'false');
  };
  button.addEventListener('click', async () => {
    if (shown) return hide();
    try {
      const rec = await api.call('GET', api.secretUrl(project, path) + api.query({ version }));
      shown = true;
      out.textContent = rec.value !== undefined && rec.value !== null ? rec.value : `(binary, base64) ${rec.value_b64}`;
      out.className = 'value';
      button.textContent = 'Hide';
      button.setAttribute('aria-pressed', 'true');
    } catch (err) { fail(err); }
  });
  const prevLeave = leaveView;
  leaveView = () => { hide(); prevLeave(); };
  return el('div', { class: 'reveal' }, out, ' ', button);
}

function renderSecret(body, project, path, meta) {
  clear(body);
  const details = el('dl', { class: 'meta' },
    el('dt', {}, 'Version'), el('dd', {}, String(meta.version)),
    el('dt', {}, 'Type'), el('dd', {}, meta.type || '—'),
    el('dt', {}, 'Tags'), el('dd', {}, (meta.tags || []).join(', ') || '—'),
    el('dt', {}, 'Description'), el('dd', {}, meta.description || '—'),
    el('dt', {}, 'Updated'), el('dd', {}, `${when(meta.updated_at)} by ${meta.updated_by}`));
  const history = el('section', { 'aria-label': 'Version history' }, el('h3', {}, 'Version history'));
  const editor = el('section', { 'aria-label': 'Edit' });
  const deleteButton = el('button', { type: 'button', class: 'danger' }, 'Delete');
  const editButton = el('button', { type: 'button' }, 'Edit');
  body.append(
    el('section', { 'aria-label': 'Current value' }, el('h3', {}, 'Value'), valueBox(project, path, meta.version)),
    details, el('p', { class: 'actions' }, editButton, ' ', deleteButton), editor, history);
  editButton.addEventListener('click', () => editForm(editor, project, path, meta));
  deleteButton.addEventListener('click', async () => {
    try {
      await api.call('DELETE', api.secretUrl(project, path));
    } catch (err) { fail(err); return; }
    say(`Deleted ${project}/${path}; it can be restored within the recovery window.`);
    clear(body).append(el('p', { class: 'deleted' }, 'This secret is deleted. '), restoreButton(body, project, path));
  });
  loadHistory(history, body, project, path, meta);
}

/** Undoes a delete (within the recovery window), then shows the secret again. */
function restoreButton(body, project, path) {
  const restore = el('button', { type: 'button' }, 'Restore');
  restore.addEventListener('click', async () => {
    try {
      await api.call('POST', api.secretUrl(project, path, '/restore'));
      say(`Restored ${project}/${path}.`);
      renderSecret(body, project, path, await secretMeta(project, path));
    } catch (err) { fail(err); }
  });
  return restore;
}

async function loadHistory(history, body, project, path, meta) {
  let list;
  try {
    list = await api.call('GET', api.secretUrl(project, path, '/versions'));
  } catch (err) { fail(err); return; }
  const rows = list.versions.map((v) => {
    const cells = [
      el('td', {}, String(v.version) + (v.version === list.current_version ? ' (current)' : '')),
      el('td', {}, when(v.created_at)),
      el('td', {}, v.created_by),
      el('td', {}, valueBox(project, path, v.version)),
    ];
    const actions = el('td', {});
    if (v.version !== list.current_version) {
      const restore = el('button', { type: 'button' }, 'Restore');
      restore.addEventListener('click', async () => {
        try {
          // An audited read of the old version, written back as a new version
          // only if nobody changed the secret meanwhile.
          const old = await api.call('GET', api.secretUrl(project, path) + api.query({ version: v.version }));
          await api.call('PATCH', api.secretUrl(project, path), { value_b64: old.value_b64, expected_version: list.current_version });
          say(`Version ${v.version} restored as a new version.`);
          renderSecret(body, project, path, await secretMeta(project, path));
        } catch (err) {
          if (err.status === 409) return conflict(project, path);
          fail(err);
        }
      });
      actions.append(restore);
    }
    return el('tr', { 'data-version': v.version }, ...cells, actions);
  });
  history.append(table(['Version', 'Created at', 'Created by', 'Value', ''], rows));
}

async function conflict(project, path) {
  const now = await secretMeta(project, path).catch(() => null);
  const by = now ? `${now.updated_by} at ${when(now.updated_at)}` : 'someone else';
  say(`Not saved: changed by ${by} (version ${now ? now.version : '?'}); reload to see it.`, 'error');
  const reload = el('button', { type: 'button' }, 'Reload');
  reload.addEventListener('click', () => { say(''); route(); });
  message.append(' ', reload);
}

function editForm(editor, project, path, meta) {
  const value = el('textarea', { name: 'value', rows: 4, autocomplete: 'off', spellcheck: 'false' });
  const file = el('input', { type: 'file', name: 'file' });
  const description = el('input', { name: 'description', value: meta.description || '' });
  const tags = el('input', { name: 'tags', value: (meta.tags || []).join(', ') });
  const kind = el('input', { name: 'type', value: meta.type || '' });
  const problems = el('ul', { class: 'problems', role: 'alert' });
  const form = el('form', { class: 'card' },
    el('h3', {}, `New version (based on version ${meta.version})`),
    field('New value', value), field('Or a file (binary)', file),
    field('Description', description), field('Tags', tags), field('Type', kind),
    problems, el('button', { type: 'submit' }, 'Save'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const upload = file.files[0];
    clear(problems);
    if (!upload && !value.value) {
      problems.append(el('li', {}, 'New value is required (text or a file)'));
      return;
    }
    // Compare-and-set: saved only if the secret is still at the version shown.
    const body = {
      expected_version: meta.version,
      description: description.value.trim(),
      tags: splitTags(tags.value),
      type: kind.value.trim(),
    };
    if (upload) body.value_b64 = api.toBase64(new Uint8Array(await upload.arrayBuffer()));
    else body.value = value.value;
    try {
      await api.call('PATCH', api.secretUrl(project, path), body);
      value.value = '';
      say(`Saved ${project}/${path}.`);
      const page = editor.parentElement;
      renderSecret(page, project, path, await secretMeta(project, path));
    } catch (err) {
      if (err.status === 409) return conflict(project, path);
      fail(err);
    }
  });
  clear(editor).append(form);
  value.focus();
}

function splitTags(text) {
  return text.split(',').map((t) => t.trim()).filter(Boolean);
}

// ---- New secret ----

function newSecretView() {
  const project = el('input', { name: 'project', required: true });
  const path = el('input', { name: 'path', required: true });
  const text = el('textarea', { name: 'value', rows: 4, autocomplete: 'off', spellcheck: 'false' });
  const file = el('input', { type: 'file', name: 'file' });
  const description = el('input', { name: 'description' });
  const tags = el('input', { name: 'tags', placeholder: 'comma, separated' });
  const kind = el('input', { name: 'type', placeholder: 'api_key, password, certificate…' });
  const problems = el('ul', { class: 'problems', role: 'alert' });
  const form = el('form', { class: 'card', novalidate: true },
    el('h2', {}, 'New secret'),
    field('Project', project), field('Path', path),
    field('Value', text), field('Or a file (binary)', file),
    field('Description', description), field('Tags', tags), field('Type', kind),
    problems, el('button', { type: 'submit' }, 'Save'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const found = [api.projectProblem(project.value), api.pathProblem(path.value)].filter(Boolean);
    const upload = file.files[0];
    if (!upload && !text.value) found.push('Value is required (text or a file)');
    clear(problems).append(...found.map((p) => el('li', {}, p)));
    if (found.length) return;
    const body = {
      project: project.value, path: path.value,
      description: description.value || undefined,
      tags: splitTags(tags.value),
      type: kind.value || undefined,
    };
    if (upload) body.value_b64 = api.toBase64(new Uint8Array(await upload.arrayBuffer()));
    else body.value = text.value;
    try {
      await api.call('POST', '/api/secrets', body);
      text.value = '';
      say(`Created ${body.project}/${body.path}.`);
      location.hash = secretHash(body.project, body.path);
    } catch (err) { fail(err); }
  });
  main.append(form);
  project.focus();
}

// ---- Approvals: pending service tokens and access requests, polled ----

function approvalsView() {
  const tokens = el('section', { 'aria-label': 'Pending service tokens' });
  const requests = el('section', { 'aria-label': 'Pending access requests' });
  main.append(el('h2', {}, 'Approvals'), tokens, requests);
  const refresh = async () => {
    try {
      const [t, r] = await Promise.all([
        api.call('GET', '/api/service-tokens?state=pending'),
        api.call('GET', '/api/access-requests?status=pending'),
      ]);
      renderTokens(tokens, t.items, refresh);
      renderRequests(requests, r.items, refresh);
    } catch (err) { fail(err); }
  };
  refresh();
  // New requests appear without a reload.
  const timer = setInterval(refresh, 3000);
  leaveView = () => clearInterval(timer);
}

function decide(url, body, refresh, done) {
  return async () => {
    try {
      await api.call('POST', url, body && body());
      say(done);
    } catch (err) { fail(err); }
    refresh();
  };
}

function renderTokens(section, items, refresh) {
  const rows = items.map((t) => el('tr', { 'data-service': t.service_name },
    el('td', {}, t.service_name), el('td', {}, t.service_version), el('td', {}, when(t.requested_at)),
    el('td', {},
      el('button', { type: 'button', onclick: decide(`/api/service-tokens/${encodeURIComponent(t.id)}/approve`, null, refresh, `Approved the token of ${t.service_name}.`) }, 'Approve'), ' ',
      el('button', { type: 'button', class: 'danger', onclick: decide(`/api/service-tokens/${encodeURIComponent(t.id)}/deny`, null, refresh, `Denied the token of ${t.service_name}.`) }, 'Deny'))));
  clear(section).append(el('h3', {}, 'Service tokens'),
    rows.length ? table(['Service', 'Version', 'Asked at', ''], rows) : el('p', {}, 'No pending service tokens.'));
}

function renderRequests(section, items, refresh) {
  const rows = items.map((r) => {
    const expiry = el('select', { 'aria-label': `Grant for ${r.service_name} lasts` },
      el('option', { value: '' }, 'until revoked'),
      el('option', { value: '3600' }, '1 hour'),
      el('option', { value: '86400' }, '1 day'),
      el('option', { value: '604800' }, '7 days'));
    const body = () => (expiry.value ? { expires_in: Number(expiry.value) } : {});
    return el('tr', { 'data-service': r.service_name },
      el('td', {}, r.service_name), el('td', {}, `${r.project}/${r.path}`), el('td', {}, when(r.requested_at)),
      el('td', {}, String(r.attempts)), el('td', {}, expiry),
      el('td', {},
        el('button', { type: 'button', onclick: decide(`/api/access-requests/${encodeURIComponent(r.id)}/approve`, body, refresh, `Granted ${r.service_name} access to ${r.project}/${r.path}.`) }, 'Approve'), ' ',
        el('button', { type: 'button', class: 'danger', onclick: decide(`/api/access-requests/${encodeURIComponent(r.id)}/deny`, null, refresh, `Denied ${r.service_name} access to ${r.project}/${r.path}.`) }, 'Deny')));
  });
  clear(section).append(el('h3', {}, 'Access requests'),
    rows.length ? table(['Service', 'Secret', 'Asked at', 'Attempts', 'Grant lasts', ''], rows) : el('p', {}, 'No pending access requests.'));
}

// ---- Missing: stubs, filled in place ----

async function missingView() {
  const list = el('div');
  main.append(el('h2', {}, 'Missing'), el('p', {}, 'Secrets services asked for that do not exist yet.'), list);
  const refresh = async () => {
    let page;
    try {
      page = await api.call('GET', '/api/secrets?state=missing&limit=200');
    } catch (err) { fail(err); return; }
    const rows = page.items.map((s) => {
      const value = el('input', { type: 'password', autocomplete: 'off', 'aria-label': `Value for ${s.project}/${s.path}` });
      const save = el('button', { type: 'submit' }, 'Save');
      const form = el('form', { class: 'inline' }, value, ' ', save);
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        try {
          await api.call('POST', '/api/secrets', { project: s.project, path: s.path, value: value.value });
          value.value = '';
          say(`Filled ${s.project}/${s.path}.`);
          refresh();
        } catch (err) { fail(err); }
      });
      return el('tr', { 'data-path': s.path },
        el('td', {}, s.project), el('td', {}, s.path), el('td', {}, (s.requested_by || []).join(', ')),
        el('td', {}, s.description || ''), el('td', {}, when(s.updated_at)), el('td', {}, form));
    });
    clear(list).append(rows.length
      ? table(['Project', 'Path', 'Asked by', 'Description', 'Last asked', 'Fill in'], rows)
      : el('p', {}, 'Nothing is missing.'));
  };
  await refresh();
}

// ---- Audit: filters, failures highlighted, CSV export ----

const AUDIT_COLUMNS = ['ts', 'action', 'outcome', 'actor', 'project', 'path', 'version', 'channel', 'client_ip', 'error_code', 'request_id', 'count'];

function auditView() {
  const inputs = {
    project: el('input', { name: 'project' }),
    path: el('input', { name: 'path' }),
    actor: el('input', { name: 'actor' }),
    outcome: el('select', { name: 'outcome' }, ...['', 'failed', 'success', 'denied', 'not_found', 'invalid', 'conflict', 'error', 'pending']
      .map((o) => el('option', { value: o }, o || 'any'))),
    since: el('input', { name: 'since', type: 'datetime-local', step: 1 }),
    until: el('input', { name: 'until', type: 'datetime-local', step: 1 }),
  };
  const results = el('div');
  const exportButton = el('button', { type: 'button', disabled: true }, 'Export CSV');
  const form = el('form', { class: 'toolbar' },
    field('Project', inputs.project), field('Path', inputs.path), field('Actor', inputs.actor),
    field('Outcome', inputs.outcome), field('From', inputs.since), field('To', inputs.until),
    el('button', { type: 'submit' }, 'Filter'), exportButton);
  main.append(el('h2', {}, 'Audit'), form, results);
  let records = [];
  const iso = (local) => (local ? new Date(local).toISOString() : undefined);
  const load = async () => {
    const q = {
      project: inputs.project.value.trim(), path: inputs.path.value.trim(), actor: inputs.actor.value.trim(),
      outcome: inputs.outcome.value, since: iso(inputs.since.value), until: iso(inputs.until.value), limit: 500,
    };
    let page;
    try {
      page = await api.call('GET', `/api/audit${api.query(q)}`);
    } catch (err) { fail(err); return; }
    records = page.records;
    exportButton.disabled = records.length === 0;
    const rows = records.map((r) => el('tr', { class: r.outcome === 'success' || r.outcome === 'pending' ? '' : 'failed' },
      ...AUDIT_COLUMNS.slice(0, 10).map((c) => el('td', {}, c === 'ts' ? when(r.ts) : (r[c] ?? '')))));
    clear(results).append(
      el('p', { class: 'totals' }, `${page.totals.success} successful, ${page.totals.failed} failed (all matching records); showing ${records.length}`),
      rows.length ? table(AUDIT_COLUMNS.slice(0, 10).map((c) => c.replace('_', ' ')), rows) : el('p', {}, 'No records match.'));
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); load(); });
  exportButton.addEventListener('click', () => {
    const cell = (v) => {
      const s = v === undefined || v === null ? '' : String(v);
      // Quoted, and a leading formula character neutralised for spreadsheets.
      return `"${(/^[=+\-@]/.test(s) ? `'${s}` : s).replace(/"/g, '""')}"`;
    };
    const csv = [AUDIT_COLUMNS.join(','), ...records.map((r) => AUDIT_COLUMNS.map((c) => cell(r[c])).join(','))].join('\r\n');
    const url = URL.createObjectURL(new Blob([csv], { type: 'text/csv' }));
    const a = el('a', { href: url, download: 'audit.csv' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  });
  load();
}

// ---- Keys: state, seal counts, rotate and rewrap with progress ----

function keysView() {
  const list = el('div');
  const progress = el('progress', { max: 1, value: 0, hidden: true, 'aria-label': 'Rewrap progress' });
  const rotate = el('button', { type: 'button' }, 'Rotate');
  const rewrap = el('button', { type: 'button' }, 'Rewrap');
  const status = el('p', { role: 'status' });
  main.append(el('h2', {}, 'Keys'), el('p', { class: 'actions' }, rotate, ' ', rewrap, ' ', progress), status, list);
  const refresh = async () => {
    let keys;
    try {
      keys = await api.call('GET', '/api/sys/keys');
    } catch (err) { fail(err); return null; }
    const rows = keys.keys.map((k) => el('tr', { class: k.key_id === keys.active_key_id ? 'active' : '' },
      el('td', {}, k.key_id), el('td', {}, k.state + (k.legacy ? ' (legacy)' : '')), el('td', {}, when(k.created_at)),
      el('td', {}, when(k.retired_at)), el('td', {}, String(k.seals)), el('td', {}, String(k.versions))));
    clear(list).append(table(['Key', 'State', 'Created at', 'Retired at', 'Seals', 'Versions sealed'], rows));
    return keys;
  };
  rotate.addEventListener('click', async () => {
    try {
      const r = await api.call('POST', '/api/sys/rotate');
      say(`Rotated: ${r.active_key_id} is now active.`);
    } catch (err) { fail(err); }
    refresh();
  });
  rewrap.addEventListener('click', async () => {
    rewrap.disabled = true;
    progress.hidden = false;
    try {
      const before = await refresh();
      const total = before ? before.keys.filter((k) => k.key_id !== before.active_key_id).reduce((n, k) => n + k.versions, 0) : 0;
      progress.max = Math.max(total, 1);
      for (;;) {
        const r = await api.call('POST', '/api/sys/rewrap?max_documents=100');
        progress.value = Math.max(total - r.versions_remaining, 0);
        status.textContent = `Rewrapped; ${r.versions_remaining} versions remaining.`;
        if (r.versions_remaining === 0 || r.documents_scanned === 0) break;
      }
      say('Rewrap done: every version is sealed by the active key.');
    } catch (err) { fail(err); }
    rewrap.disabled = false;
    refresh();
  });
  refresh();
}

showSignIn();
