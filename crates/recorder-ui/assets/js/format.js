// Formatting recorded values for people.

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** `2026-01-31 12:00:05Z` from a Date (always UTC: audit logs compare across zones). */
export function utc(date) {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) return '—';
  return `${date.getUTCFullYear()}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())} ` +
    `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}Z`;
}

/** A `<time>`-friendly pair from Unix seconds. */
export function fromUnix(seconds) {
  const d = new Date(Number(seconds) * 1000);
  return { text: utc(d), iso: Number.isNaN(d.getTime()) ? '' : d.toISOString() };
}

/** `1.2 s`, `3 min 04 s`, `2 h 05 min` from seconds. */
export function duration(seconds) {
  const s = Number(seconds);
  if (!Number.isFinite(s) || s < 0) return '—';
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${pad(Math.round(s % 60))} s`;
  return `${Math.floor(m / 60)} h ${pad(m % 60)} min`;
}

/** `12 ms`, `1.5 s` from milliseconds. */
export function millis(ms) {
  const v = Number(ms);
  if (!Number.isFinite(v)) return '';
  return v < 1000 ? `${v < 10 ? v.toFixed(1) : Math.round(v)} ms` : `${(v / 1000).toFixed(2)} s`;
}

/** `512 B`, `1.4 KiB`, `3.0 MiB`. */
export function bytes(n) {
  const v = Number(n);
  if (!Number.isFinite(v)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let x = v;
  while (x >= 1024 && i < units.length - 1) { x /= 1024; i += 1; }
  return i === 0 ? `${x} B` : `${x.toFixed(1)} ${units[i]}`;
}

/** Who made a request: the login name, or the node's tags for tagged nodes. */
export function caller(source) {
  if (!source) return '';
  if (source.nodeUser) return source.nodeUser;
  if (Array.isArray(source.nodeTags) && source.nodeTags.length) return source.nodeTags.join(', ');
  return '';
}

/** The caller of a session from its cast header. */
export function sessionCaller(header) {
  if (!header) return '';
  if (header.srcNodeUser) return header.srcNodeUser;
  if (Array.isArray(header.srcNodeTags) && header.srcNodeTags.length) return header.srcNodeTags.join(', ');
  return '';
}

/** `pods/exec`, or the path of a non-resource request. */
export function resource(k) {
  if (!k) return '';
  if (!k.IsResourceRequest) return k.Path || '';
  return k.Subresource ? `${k.Resource}/${k.Subresource}` : (k.Resource || '');
}

const COLLECTION_VERBS = new Set(['list', 'watch', 'deletecollection']);

/**
 * `namespace/name`; `namespace/*` for collection verbs (list, watch,
 * deletecollection); `namespace` alone otherwise (e.g. create: the name is
 * in the body); `name`; or empty.
 */
export function namespacedName(k, nameFromBody = '') {
  if (!k) return '';
  const name = k.Name || nameFromBody;
  if (k.Namespace && name) return `${k.Namespace}/${name}`;
  if (k.Namespace) return COLLECTION_VERBS.has(k.Verb) ? `${k.Namespace}/*` : k.Namespace;
  return name || '';
}

/** `metadata.name` of a JSON request body (what `create` names), or ''. */
export function bodyObjectName(base64) {
  if (!base64) return '';
  try {
    const raw = atob(base64);
    const text = new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(raw, (c) => c.charCodeAt(0)));
    const v = JSON.parse(text);
    const name = v && v.metadata && v.metadata.name;
    return typeof name === 'string' ? name : '';
  } catch {
    return '';
  }
}

/** When a session started: the proxy's header timestamp, else the upload start. */
export function sessionStart(info) {
  const ts = info && info.header && Number(info.header.timestamp);
  return ts > 0 ? new Date(ts * 1000) : new Date(Number(info && info.startedMs));
}

/** CSS class for an HTTP status. */
export function statusClass(status) {
  const s = Number(status);
  if (s >= 100 && s < 400) return 'status-ok';
  if (s >= 400 && s < 500) return 'status-denied';
  return 'status-error';
}

/**
 * Pretty-prints JSON text, keeping every literal exactly as written (numbers
 * are not re-parsed, so int64 values and float digits survive). Returns null
 * when `text` is not JSON.
 */
export function prettyJson(text, indent = '  ') {
  try { JSON.parse(text); } catch { return null; }
  let out = '';
  let depth = 0;
  let inString = false;
  let escaped = false;
  const newline = () => '\n' + indent.repeat(depth);
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (inString) {
      out += c;
      if (escaped) escaped = false;
      else if (c === '\\') escaped = true;
      else if (c === '"') inString = false;
      continue;
    }
    switch (c) {
      case '"': inString = true; out += c; break;
      case '{': case '[': {
        let j = i + 1;
        while (j < text.length && ' \t\r\n'.includes(text[j])) j += 1;
        if (text[j] === (c === '{' ? '}' : ']')) { out += c + text[j]; i = j; break; }
        depth += 1; out += c + newline(); break;
      }
      case '}': case ']': depth -= 1; out += newline() + c; break;
      case ',': out += ',' + newline(); break;
      case ':': out += ': '; break;
      case ' ': case '\t': case '\r': case '\n': break;
      default: out += c;
    }
  }
  return out;
}

/**
 * Decodes a recorded request body (Go `[]byte` → base64). Returns
 * `{kind: 'empty'|'json'|'text'|'binary'|'invalid', text, size}`.
 */
export function decodeBody(base64) {
  if (base64 === null || base64 === undefined || base64 === '') return { kind: 'empty', text: '', size: 0 };
  let raw;
  try { raw = atob(base64); } catch { return { kind: 'invalid', text: String(base64), size: 0 }; }
  const data = Uint8Array.from(raw, (c) => c.charCodeAt(0));
  let text;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch {
    return { kind: 'binary', text: hexDump(data.subarray(0, 4096)), size: data.length };
  }
  const pretty = prettyJson(text);
  if (pretty !== null) return { kind: 'json', text: pretty, size: data.length };
  return { kind: 'text', text, size: data.length };
}

/** Classic 16-bytes-per-line hex dump. */
export function hexDump(data) {
  const lines = [];
  for (let off = 0; off < data.length; off += 16) {
    const row = data.subarray(off, off + 16);
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, '0')).join(' ');
    const ascii = Array.from(row, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${off.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join('\n');
}

/** `2026-01-31T12:00` (datetime-local, UTC) from an RFC 3339 or Unix-seconds query value. */
export function toInputValue(value) {
  if (!value) return '';
  const d = /^\d+$/.test(value) ? new Date(Number(value) * 1000) : new Date(value);
  if (Number.isNaN(d.getTime())) return '';
  return d.toISOString().slice(0, 19);
}

/** RFC 3339 UTC (`…Z`) from a datetime-local value read as UTC. */
export function fromInputValue(value) {
  if (!value) return '';
  const withSeconds = value.length === 16 ? `${value}:00` : value;
  const d = new Date(`${withSeconds}Z`);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString().replace('.000Z', 'Z');
}
