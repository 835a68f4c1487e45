// One session: its metadata, in-browser playback with asciinema-player and
// a download of the stored .cast.

import { h, replace, definitions } from './dom.js';
import { getJson, getText } from './api.js';
import * as fmt from './format.js';
import { normaliseCast } from './cast.js';
import { stateBadge } from './sessions.js';

/** Casts above this size are loaded only on request (they are held in memory). */
const AUTO_LOAD_BYTES = 32 * 1024 * 1024;
const LIVE_POLL_MS = 3000;

function facts(info) {
  const header = info.header || {};
  const k = header.kubernetes || {};
  const started = fmt.sessionStart(info);
  return definitions([
    ['State', stateBadge(info)],
    ['Started', h('time', { datetime: Number.isNaN(started.getTime()) ? '' : started.toISOString(), text: fmt.utc(started) })],
    ['Upload started', fmt.utc(new Date(Number(info.startedMs)))],
    ['Caller', fmt.sessionCaller(header)],
    ['Node', header.srcNode || ''],
    ['Pod', k.PodName ? `${k.Namespace || ''}/${k.PodName}` : ''],
    ['Container', k.Container || ''],
    ['Type', k.SessionType || ''],
    ['Command', header.command ? h('code', { text: header.command }) : ''],
    ['Terminal', header.width && header.height ? `${header.width}×${header.height}` : 'no TTY'],
    ['Duration', fmt.duration(info.durationSeconds)],
    ['Size', fmt.bytes(info.size)],
    ['Error', info.error || ''],
    ['Uploaded by', info.uploader ? `${info.uploader} (${info.protocol || '?'})` : ''],
    ['Session id', info.id],
    ['Integrity', info.state === 'live' ? '' : h('span', { id: 'session-verification', class: 'muted', text: 'checking…' })],
    ['Request', h('span', { id: 'event-link', class: 'muted', text: header.kubescribe && header.kubescribe.eventKey ? 'looking up…' : 'not linked (no event key in the recording)' })],
  ], { id: 'session-facts' });
}

/** Renders `/ui/sessions/{id}`; returns a function that stops it. */
export function renderSession(main, route, ctx) {
  const controller = new AbortController();
  const id = route.id;
  const castUrl = `/api/v1/sessions/${encodeURIComponent(id)}/cast`;
  let player = null;
  let timer = null;
  let verifyTimer = null;
  replace(main, h('p', { class: 'muted', text: 'Loading session…' }));
  document.title = 'Session · kubescribe recorder';

  const stage = h('div', { class: 'player-stage', id: 'player' });
  const note = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });

  async function play() {
    note.textContent = 'Loading the recording…';
    const text = await getText(castUrl, {}, controller.signal);
    const cast = normaliseCast(text);
    if (typeof window.AsciinemaPlayer === 'undefined') throw new Error('The player script did not load.');
    stage.replaceChildren();
    player = window.AsciinemaPlayer.create({ data: cast.text }, stage, {
      fit: 'both',
      idleTimeLimit: 2,
      preload: true,
      controls: true,
      terminalFontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace',
    });
    player.addEventListener('play', () => { if (!cast.skipped) note.textContent = ''; });
    note.textContent = cast.skipped
      ? `${cast.skipped} line(s) of the recording could not be played and were skipped.`
      : 'Ready. Press the play button (or Space in the player) to start.';
  }

  function render(info) {
    const header = info.header || {};
    const k = header.kubernetes || {};
    const title = `${k.SessionType || 'session'} ${k.PodName ? `${k.Namespace}/${k.PodName}` : ''}`.trim();
    document.title = `${title} · kubescribe recorder`;
    const live = info.state === 'live';
    const download = live ? null : h('a', {
      class: 'button secondary', href: castUrl, download: `session-${info.id}.cast`, text: 'Download .cast',
    });
    replace(main,
      h('p', {}, h('a', { href: ctx.lastSessionsUrl(), text: '← Back to sessions' })),
      h('div', { class: 'view-head' }, h('h1', { tabindex: '-1', text: title }), live ? h('span', { class: 'badge live', text: 'Live' }) : null),
      h('div', { class: 'session-layout' },
        h('section', { class: 'playback', 'aria-labelledby': 'play-title' },
          h('h2', { id: 'play-title', class: 'visually-hidden', text: 'Playback' }),
          stage,
          note,
          h('div', { class: 'actions' }, download,
            download ? h('span', { class: 'hint', text: 'The file as recorded (Kubernetes recordings write resize events height first).' }) : null)),
        h('section', { class: 'meta', 'aria-labelledby': 'meta-title' },
          h('h2', { id: 'meta-title', text: 'Details' }),
          facts(info))));
    ctx.focusHeading();
    linkEvent(header);
    if (!live) verify();
    if (live) {
      stage.replaceChildren(h('div', { class: 'player-placeholder' },
        h('p', { text: 'This session is still being recorded.' }),
        h('p', { class: 'muted', text: 'Playback becomes available when it ends; this page checks every few seconds.' })));
      timer = window.setTimeout(() => refresh(), LIVE_POLL_MS);
      return;
    }
    if (info.size > AUTO_LOAD_BYTES) {
      stage.replaceChildren(h('div', { class: 'player-placeholder' },
        h('p', { text: `This recording is large (${fmt.bytes(info.size)}).` }),
        h('button', { type: 'button', text: 'Load it for playback', onclick: () => play().catch(fail) })));
      return;
    }
    play().catch(fail);
  }

  function linkEvent(header) {
    const key = header.kubescribe && header.kubescribe.eventKey;
    const k = header.kubernetes || {};
    if (!key) return;
    getJson('/api/v1/events', { q: key, namespace: k.Namespace, name: k.PodName, limit: 10 }, controller.signal)
      .then((page) => {
        const slot = main.querySelector('#event-link');
        if (!slot) return;
        const row = page.events.find((r) => r.event && r.event.kubescribe && r.event.kubescribe.key === key);
        if (!row) { slot.textContent = 'the request event is not in the index'; return; }
        slot.className = '';
        slot.replaceChildren(h('a', { href: `/ui/events/${encodeURIComponent(row.id)}`, text: 'the exec/attach request event' }));
      })
      .catch(() => { /* a convenience only */ });
  }

  /** Shows whether the cast matches its signed manifest (re-checked while it is pending). */
  function verify() {
    getJson(`/api/v1/sessions/${encodeURIComponent(id)}/verification`, {}, controller.signal)
      .then((v) => {
        const slot = main.querySelector('#session-verification');
        if (!slot) return;
        const shown = {
          verified: ['badge done', 'Verified'],
          unsigned: ['badge recovered', 'Hash matches (unsigned)'],
          failed: ['badge failed', 'Verification failed'],
        }[v.state] || ['muted', 'Not sealed yet'];
        slot.className = shown[0];
        slot.textContent = shown[1];
        slot.title = v.detail || '';
        slot.dataset.state = v.state;
        if (v.state === 'pending') verifyTimer = window.setTimeout(verify, LIVE_POLL_MS);
      })
      .catch(() => { /* the badge is informative only */ });
  }

  const fail = (e) => {
    if (e && e.name === 'AbortError') return;
    if (e && e.refused) { ctx.fail(e); return; }
    note.textContent = `Playback unavailable: ${e.message}`;
    note.classList.add('error');
  };

  function refresh() {
    getJson(`/api/v1/sessions/${encodeURIComponent(id)}`, {}, controller.signal)
      .then((info) => {
        if (info.state === 'live') { timer = window.setTimeout(() => refresh(), LIVE_POLL_MS); return; }
        render(info);
      })
      .catch((e) => { if (!(e && e.name === 'AbortError')) ctx.fail(e); });
  }

  getJson(`/api/v1/sessions/${encodeURIComponent(id)}`, {}, controller.signal)
    .then(render)
    .catch((e) => { if (!(e && e.name === 'AbortError')) ctx.fail(e); });
  return () => {
    controller.abort();
    if (timer) window.clearTimeout(timer);
    if (verifyTimer) window.clearTimeout(verifyTimer);
    if (player) player.dispose();
  };
}
