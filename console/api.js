// The JSON API client. The credentials live in this module's memory only (no
// storage, no cookie): a reload signs out.

let credentials = null;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function signIn(service, token) {
  credentials = { service, token };
}

export function signOut() {
  credentials = null;
}

export function service() {
  return credentials ? credentials.service : null;
}

/** Calls the API; resolves to the parsed JSON (or null for 204), throws ApiError. */
export async function call(method, path, body) {
  if (!credentials) throw new ApiError(401, 'signed_out', 'Signed out');
  const headers = { 'X-Service': credentials.service, 'X-Token': credentials.token };
  const init = { method, headers, cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 204) return null;
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!res.ok) {
    const err = json && json.error ? json.error : { code: 'http_' + res.status, message: res.statusText };
    throw new ApiError(res.status, err.code, err.message);
  }
  return json;
}

/** `/api/secrets/{project}/{path}` with each segment encoded. */
export function secretUrl(project, path, suffix = '') {
  const segs = [project, ...path.split('/')].map(encodeURIComponent).join('/');
  return `/api/secrets/${segs}${suffix}`;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

// Names, as the API checks them (src/vault/names.rs).
const SEGMENT = /^[A-Za-z0-9_.-]+$/;

export function projectProblem(name) {
  if (!name) return 'Project is required';
  if (name.length > 64) return 'Project must be at most 64 characters';
  if (!SEGMENT.test(name)) return 'Project may contain only A-Z a-z 0-9 _ - .';
  if (name.startsWith('.')) return 'Project must not start with "."';
  return null;
}

export function pathProblem(path) {
  if (!path) return 'Path is required';
  if (path.length > 512) return 'Path must be at most 512 characters';
  for (const seg of path.split('/')) {
    if (!seg || seg === '.' || seg === '..') return 'Path segments must not be empty, "." or ".."';
    if (!SEGMENT.test(seg)) return 'Path may contain only A-Z a-z 0-9 _ - . and /';
  }
  const last = path.split('/').pop();
  if (last === 'versions' || last === 'restore') return 'Path must not end in "versions" or "restore"';
  return null;
}

/** Bytes to standard base64. */
export function toBase64(bytes) {
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}
