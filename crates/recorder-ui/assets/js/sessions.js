// The sessions view: recorded kubectl exec/attach sessions, newest first,
// with live ones marked and the list refreshed while any is live.

import { h, replace } from './dom.js';
import { getJson } from './api.js';
import * as fmt from './format.js';
import { navigate } from './router.js';

const FILTERS = ['user', 'node', 'namespace', 'pod', 'live'];
const PAGE = 100;
const REFRESH_MS = 5000;

/** A state badge: live sessions stand out, failures are explained. */
export function stateBadge(info) {
  switch (info.state) {
    case 'live': return h('span', { class: 'badge live', text: 'Live' });
    case 'failed': return h('span', { class: 'badge failed', title: info.error || '', text: 'Failed' });
    case 'recovered': return h('span', { class: 'badge recovered', title: 'finalised after a recorder restart', text: 'Recovered' });
    default: return h('span', { class: 'badge done', text: 'Finished' });
  }
}

function sessionRow(s) {
  const header = s.header || {};
  const k = header.kubernetes || {};
  const started = fmt.sessionStart(s);
  const pod = k.Namespace ? `${k.Namespace}/${k.PodName || ''}` : (k.PodName || '');
  const command = header.command || (k.SessionType === 'attach' ? '(attach)' : '');
  return h('tr', { dataset: { id: s.id }, class: s.state === 'live' ? 'is-live' : '' },
    h('td', { class: 'nowrap' }, h('a', { href: `/ui/sessions/${encodeURIComponent(s.id)}` },
      h('time', { datetime: Number.isNaN(started.getTime()) ? '' : started.toISOString(), text: fmt.utc(started) }))),
    h('td', { class: 'clip', title: fmt.sessionCaller(header), text: fmt.sessionCaller(header) }),
    h('td', { class: 'clip', title: pod, text: pod }),
    h('td', { class: 'clip', text: k.Container || '' }),
    h('td', { class: 'clip mono', title: command, text: command }),
    h('td', { class: 'num', text: fmt.duration(s.durationSeconds) }),
    h('td', { class: 'num', text: fmt.bytes(s.size) }),
    h('td', {}, stateBadge(s)));
}

function filterForm(params) {
  const input = (name, label, placeholder) => h('div', { class: 'field' },
    h('label', { for: `s-${name}`, text: label }),
    h('input', { id: `s-${name}`, name, type: 'text', value: params.get(name) || '', placeholder, autocomplete: 'off', spellcheck: 'false' }));
  const liveSel = h('select', { id: 's-live', name: 'live' },
    [['', 'All'], ['true', 'Live only'], ['false', 'Ended only']].map(([v, t]) => h('option', { value: v, selected: (params.get('live') || '') === v, text: t })));
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter sessions' },
    input('user', 'Caller (login)', 'alice@example.com'),
    input('node', 'Node', ''),
    input('namespace', 'Namespace', ''),
    input('pod', 'Pod', ''),
    h('div', { class: 'field' }, h('label', { for: 's-live', text: 'State' }), liveSel),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', text: 'Apply filters' }),
      h('a', { class: 'button secondary', href: '/ui/sessions', text: 'Clear' })));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const out = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (String(v).trim()) out.set(k, String(v).trim());
    const qs = out.toString();
    navigate(`/ui/sessions${qs ? `?${qs}` : ''}`);
  });
  return form;
}

/** Renders `/ui/sessions`; returns a function that stops it. */
export function renderSessions(main, route, ctx) {
  const params = route.params;
  const filters = {};
  for (const f of FILTERS) if (params.get(f)) filters[f] = params.get(f);
  const controller = new AbortController();
  const status = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
  const tbody = h('tbody');
  const more = h('button', { type: 'button', class: 'secondary', hidden: true, text: 'Load older sessions' });
  const empty = h('p', { class: 'empty', hidden: true, text: 'No sessions match these filters.' });
  replace(main,
    h('div', { class: 'view-head' }, h('h1', { tabindex: '-1', text: 'Sessions' })),
    filterForm(params),
    status,
    h('div', { class: 'table-wrap' },
      h('table', { class: 'grid sessions-table' },
        h('caption', { class: 'visually-hidden', text: 'Recorded exec and attach sessions, newest first' }),
        h('thead', {}, h('tr', {}, ['Started (UTC)', 'Caller', 'Pod', 'Container', 'Command', 'Duration', 'Size', 'State']
          .map((c) => h('th', { scope: 'col', text: c })))),
        tbody)),
    empty,
    more);
  document.title = 'Sessions · kubescribe recorder';

  let cursor = null;
  let shown = 0;
  let timer = null;

  async function load({ refresh = false } = {}) {
    const page = await getJson('/api/v1/sessions', { ...filters, limit: refresh ? Math.max(shown, PAGE) : PAGE, cursor: refresh ? null : cursor }, controller.signal);
    const rows = page.sessions.map(sessionRow);
    if (refresh) {
      tbody.replaceChildren(...rows);
      shown = rows.length;
    } else {
      tbody.append(...rows);
      shown += rows.length;
    }
    cursor = page.nextCursor || null;
    more.hidden = !cursor;
    empty.hidden = shown > 0;
    const live = page.sessions.filter((s) => s.state === 'live').length;
    status.textContent = `${shown} session${shown === 1 ? '' : 's'} shown${live ? `, ${live} live (refreshing)` : ''}`;
    if (live && !timer) {
      timer = window.setInterval(() => {
        if (!document.hidden) load({ refresh: true }).catch(fail);
      }, REFRESH_MS);
    } else if (!live && timer && refresh) {
      window.clearInterval(timer);
      timer = null;
    }
  }
  const fail = (e) => { if (!(e && e.name === 'AbortError')) ctx.fail(e); };
  more.addEventListener('click', () => load().catch(fail));
  load().catch(fail);
  return () => {
    controller.abort();
    if (timer) window.clearInterval(timer);
  };
}
