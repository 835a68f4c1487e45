// The events view: filters (kept in the URL), a newest-first table, paging
// back with the API's cursor, and a live tail polling for newer events.

import { h, replace } from './dom.js';
import { getJson } from './api.js';
import * as fmt from './format.js';
import { navigate } from './router.js';

/** Query parameters of /api/v1/events that the view exposes, in URL order. */
export const FILTERS = ['since', 'until', 'user', 'tag', 'node', 'verb', 'resource', 'namespace', 'name', 'q', 'reads'];

const VERBS = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection'];
const RESOURCES = ['pods', 'deployments', 'replicasets', 'services', 'secrets',
  'configmaps', 'namespaces', 'nodes', 'statefulsets', 'daemonsets', 'jobs', 'cronjobs', 'ingresses',
  'roles', 'rolebindings', 'clusterroles', 'clusterrolebindings', 'serviceaccounts', 'events'];

const PAGE = 100;
const TAIL_INTERVAL_MS = 2000;
/** How often a day's integrity badge is re-checked while nothing of it is sealed yet. */
const DAY_POLL_MS = 3000;
/** The most days the "Integrity by day" list shows (the newest). */
const MAX_DAYS = 7;

/** The UTC day (`YYYY-MM-DD`) a record id's segment is stored under: its UUIDv7's time. */
export function dayOfId(id) {
  const [, hex = ''] = String(id).split('-');
  if (!/^[0-9a-f]{32}$/.test(hex)) return null;
  const ms = parseInt(hex.slice(0, 12), 16);
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? null : d.toISOString().slice(0, 10);
}

/** Badge class and wording per day status, as the session page words them. */
const DAY_BADGES = {
  verified: ['badge done', 'Verified'],
  unsigned: ['badge recovered', 'Hash matches (unsigned)'],
  failed: ['badge failed', 'Verification failed'],
  pending: ['muted', 'Not sealed yet'],
  empty: ['muted', 'Nothing stored'],
};

/**
 * The "Integrity by day" list: one badge per UTC day of the events shown, from
 * GET /api/v1/verification?date=…; returns `{ el, add(days), stop() }`.
 */
function integrityByDay(signal) {
  const list = h('ul', { class: 'day-integrity' });
  const el = h('section', { class: 'day-integrity-wrap', 'aria-label': 'Integrity by day', hidden: true },
    h('h2', { class: 'visually-hidden', text: 'Integrity by day' }),
    h('span', { class: 'muted', text: 'Integrity by day (UTC): ' }),
    list);
  const shown = new Map();
  const timers = new Set();

  function check(date, badge) {
    getJson('/api/v1/verification', { date }, signal)
      .then((v) => {
        const [cls, text] = DAY_BADGES[v.status] || DAY_BADGES.pending;
        badge.className = `day-verification ${cls}`;
        badge.textContent = text;
        badge.dataset.state = v.status;
        const counts = `${v.verified} of ${v.segments + v.sessions} segments and casts verified, ${v.pending} pending`;
        badge.title = [counts, ...(v.problems || [])].join('\n');
        if (v.status === 'pending') {
          const t = window.setTimeout(() => { timers.delete(t); check(date, badge); }, DAY_POLL_MS);
          timers.add(t);
        }
      })
      .catch((e) => {
        if (e && e.name === 'AbortError') return;
        badge.className = 'day-verification muted';
        badge.textContent = 'unavailable';
        badge.title = e && e.message ? e.message : '';
      });
  }

  function add(days) {
    for (const date of days) {
      if (!date || shown.has(date) || shown.size >= MAX_DAYS) continue;
      const badge = h('span', { class: 'day-verification muted', dataset: { date }, text: 'checking…' });
      const item = h('li', {}, h('time', { datetime: date, text: date }), ' ', badge);
      shown.set(date, item);
      const later = [...shown.keys()].filter((d) => d > date).length;
      const before = list.children[later] || null;
      list.insertBefore(item, before);
      check(date, badge);
    }
    el.hidden = shown.size === 0;
  }

  return { el, add, stop: () => { for (const t of timers) window.clearTimeout(t); } };
}

/** Compares record ids (`e-<32 hex>-<line>`) by commit order: > 0 when a is newer. */
export function compareIds(a, b) {
  const [, ha = '', la = '0'] = String(a).split('-');
  const [, hb = '', lb = '0'] = String(b).split('-');
  if (ha !== hb) return ha < hb ? -1 : 1;
  return Number(la) - Number(lb);
}

/** Filters from the URL, as API parameters. */
export function filtersFrom(params) {
  const out = {};
  for (const f of FILTERS) {
    const v = params.get(f);
    if (v) out[f] = v;
  }
  return out;
}

function field(id, label, input, hint) {
  return h('div', { class: 'field' },
    h('label', { for: id, text: label }),
    input,
    hint ? h('span', { class: 'hint', id: `${id}-hint`, text: hint }) : null);
}

function datalist(id, values) {
  return h('datalist', { id }, values.map((v) => h('option', { value: v })));
}

function filterForm(filters, live) {
  const text = (name, value, extra = {}) => h('input', {
    id: `f-${name}`, name, type: 'text', value: value || '', autocomplete: 'off', spellcheck: 'false', ...extra,
  });
  const callerValue = filters.tag || filters.user || '';
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter events' },
    field('f-since', 'From (UTC)', h('input', { id: 'f-since', name: 'since', type: 'datetime-local', step: '1', value: fmt.toInputValue(filters.since) })),
    field('f-until', 'To (UTC)', h('input', { id: 'f-until', name: 'until', type: 'datetime-local', step: '1', value: fmt.toInputValue(filters.until) })),
    field('f-caller', 'Caller', text('caller', callerValue, { placeholder: 'alice@example.com', 'aria-describedby': 'f-caller-hint' }), 'login name, or tag:NAME'),
    field('f-node', 'Node', text('node', filters.node, { placeholder: 'laptop.tail1234.ts.net' })),
    field('f-verb', 'Verb', text('verb', filters.verb, { list: 'verbs' })),
    field('f-resource', 'Resource', text('resource', filters.resource, { list: 'resources' })),
    field('f-namespace', 'Namespace', text('namespace', filters.namespace)),
    field('f-name', 'Name', text('name', filters.name)),
    field('f-q', 'Text', h('input', { id: 'f-q', name: 'q', type: 'search', value: filters.q || '', placeholder: 'any text', autocomplete: 'off', 'aria-describedby': 'f-q-hint' }), 'case-insensitive; not inside bodies'),
    field('f-reads', 'Reads of the recorder', h('select', { id: 'f-reads', name: 'reads', 'aria-describedby': 'f-reads-hint' },
      [['', 'hidden'], ['only', 'only reads'], ['include', 'with the rest']].map(([value, label]) =>
        h('option', { value, text: label, selected: (filters.reads || '') === value }))),
    'who read which events and sessions here'),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', text: 'Apply filters' }),
      h('a', { class: 'button secondary', href: '/ui/events', text: 'Clear' }),
      h('label', { class: 'toggle' },
        h('input', { type: 'checkbox', name: 'live', id: 'f-live', checked: live }),
        ' Live tail')),
    datalist('verbs', VERBS),
    datalist('resources', RESOURCES));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    navigate(`/ui/events${queryFromForm(form)}`);
  });
  form.querySelector('#f-live').addEventListener('change', () => {
    navigate(`/ui/events${queryFromForm(form)}`, { replace: true });
  });
  return form;
}

function queryFromForm(form) {
  const data = new FormData(form);
  const params = new URLSearchParams();
  const since = fmt.fromInputValue(String(data.get('since') || ''));
  const until = fmt.fromInputValue(String(data.get('until') || ''));
  if (since) params.set('since', since);
  if (until) params.set('until', until);
  const caller = String(data.get('caller') || '').trim();
  if (caller.startsWith('tag:')) params.set('tag', caller);
  else if (caller) params.set('user', caller);
  for (const f of ['node', 'verb', 'resource', 'namespace', 'name', 'q', 'reads']) {
    const v = String(data.get(f) || '').trim();
    if (v) params.set(f, v);
  }
  if (data.get('live')) params.set('live', '1');
  const qs = params.toString();
  return qs ? `?${qs}` : '';
}

function statusCell(response) {
  if (!response) return h('td', { class: 'status-none' }, h('span', { title: 'no response record (yet)', text: '—' }));
  const label = response.status ? String(response.status) : 'no response';
  return h('td', {},
    h('span', { class: `status ${fmt.statusClass(response.status)}`, title: response.error || '', text: label }),
    response.durationMs !== undefined ? h('span', { class: 'duration', text: ` ${fmt.millis(response.durationMs)}` }) : null);
}

/** One table row for an API row `{id, event, response}`. */
export function eventRow(row) {
  const e = row.event || {};
  const k = e.kubernetes || {};
  const t = fmt.fromUnix(e.timestamp);
  const verb = k.Verb || (e.request && e.request.method ? e.request.method.toLowerCase() : '');
  const node = (e.source && e.source.node) || '';
  const target = fmt.namespacedName(k, k.Verb === 'create' ? fmt.bodyObjectName(e.request && e.request.body) : '');
  return h('tr', { dataset: { id: row.id } },
    h('td', { class: 'nowrap' }, h('a', { href: `/ui/events/${encodeURIComponent(row.id)}` }, h('time', { datetime: t.iso, text: t.text }))),
    h('td', { class: 'clip', title: fmt.caller(e.source), text: fmt.caller(e.source) }),
    h('td', { class: 'clip', title: node, text: node }),
    h('td', {}, h('span', { class: `verb verb-${verb.replace(/[^a-z]/g, '')}`, text: verb })),
    h('td', { class: 'clip', title: fmt.resource(k), text: fmt.resource(k) }),
    h('td', { class: 'clip', title: target, text: target }),
    statusCell(row.response));
}

/** Renders the view into `main`; returns a function that stops it. */
export function renderEvents(main, route, ctx) {
  const filters = filtersFrom(route.params);
  const live = route.params.get('live') === '1';
  const controller = new AbortController();
  const status = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
  const tbody = h('tbody');
  const table = h('table', { class: 'grid events-table' },
    h('caption', { class: 'visually-hidden', text: 'Recorded Kubernetes API requests, newest first' }),
    h('thead', {}, h('tr', {}, ['Time (UTC)', 'Caller', 'Node', 'Verb', 'Resource', 'Namespace/name', 'Status']
      .map((c) => h('th', { scope: 'col', text: c })))),
    tbody);
  const more = h('button', { type: 'button', class: 'secondary', hidden: true, text: 'Load older events' });
  const empty = h('p', { class: 'empty', hidden: true, text: 'No events match these filters.' });
  const days = integrityByDay(controller.signal);
  replace(main,
    h('div', { class: 'view-head' },
      h('h1', { tabindex: '-1', text: 'API events' }),
      live ? h('span', { class: 'badge live', text: 'Live tail' }) : null),
    filterForm(filters, live),
    status,
    days.el,
    h('div', { class: 'table-wrap' }, table),
    empty,
    more);
  document.title = 'Events · kubescribe recorder';

  let topId = null;
  let cursor = null;
  let count = 0;
  let timer = null;
  let busy = false;

  const showCount = (extra = '') => {
    status.textContent = `${count} event${count === 1 ? '' : 's'} shown${cursor ? ' (more available)' : ''}${extra}`;
  };

  async function loadPage() {
    more.disabled = true;
    try {
      const page = await getJson('/api/v1/events', { ...filters, limit: PAGE, cursor }, controller.signal);
      for (const row of page.events) tbody.append(eventRow(row));
      days.add(page.events.map((r) => dayOfId(r.id)));
      if (!topId && page.events.length) topId = page.events[0].id;
      count += page.events.length;
      cursor = page.nextCursor || null;
      more.hidden = !cursor;
      empty.hidden = count > 0;
      showCount();
    } catch (e) {
      ctx.fail(e);
    } finally {
      more.disabled = false;
    }
  }

  async function tail() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const page = await getJson('/api/v1/events', { ...filters, limit: PAGE }, controller.signal);
      const fresh = page.events.filter((r) => !topId || compareIds(r.id, topId) > 0);
      if (fresh.length) {
        const gap = topId && fresh.length === page.events.length && page.nextCursor;
        const rows = fresh.map((r) => {
          const tr = eventRow(r);
          tr.classList.add('fresh');
          return tr;
        });
        if (gap) {
          rows.push(h('tr', { class: 'gap' }, h('td', { colspan: '7', text: 'More new events arrived than one poll fetches; reload to see all of them.' })));
        }
        tbody.prepend(...rows);
        days.add(fresh.map((r) => dayOfId(r.id)));
        topId = fresh[0].id;
        count += fresh.length;
        empty.hidden = true;
        showCount(` · ${fresh.length} new`);
      }
    } catch (e) {
      if (e && e.name === 'AbortError') return;
      if (e && e.refused) { ctx.fail(e); return; }
      status.textContent = `Live tail: ${e.message} (retrying)`;
    } finally {
      busy = false;
    }
  }

  more.addEventListener('click', () => loadPage());
  loadPage().then(() => {
    if (live && !controller.signal.aborted) timer = window.setInterval(tail, TAIL_INTERVAL_MS);
  });
  return () => {
    controller.abort();
    if (timer) window.clearInterval(timer);
    days.stop();
  };
}
