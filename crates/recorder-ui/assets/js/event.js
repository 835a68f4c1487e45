// One event: what was requested, by whom, how the API server answered, the
// decoded request body and the record exactly as the API returned it.

import { h, replace, definitions } from './dom.js';
import { getJson, getText } from './api.js';
import * as fmt from './format.js';

function code(text, label) {
  return h('pre', { class: 'code', tabindex: '0', 'aria-label': label }, h('code', { text }));
}

function bodySection(event) {
  const request = event.request || {};
  const body = fmt.decodeBody(request.body);
  const capture = event.kubescribe && event.kubescribe.body;
  const section = h('section', { 'aria-labelledby': 'body-title' }, h('h2', { id: 'body-title', text: 'Request body' }));
  if (capture && capture.truncated) {
    section.append(h('p', { class: 'note', text: `Only the first ${fmt.bytes(capture.capturedBytes)} of the body were recorded; the response record has the full size and SHA-256.` }));
  }
  switch (body.kind) {
    case 'empty':
      section.append(h('p', { class: 'muted', text: 'No request body.' }));
      break;
    case 'json':
      section.append(h('p', { class: 'muted', text: `JSON, ${fmt.bytes(body.size)}, pretty-printed:` }), code(body.text, 'Request body (JSON)'));
      break;
    case 'text':
      section.append(h('p', { class: 'muted', text: `Text, ${fmt.bytes(body.size)}:` }), code(body.text, 'Request body (text)'));
      break;
    case 'binary':
      section.append(h('p', { class: 'muted', text: `Binary (not UTF-8, for example protobuf), ${fmt.bytes(body.size)}; hex dump of the first 4 KiB:` }), code(body.text, 'Request body (hex)'));
      break;
    default:
      section.append(h('p', { class: 'note', text: 'The stored body is not valid base64; shown as stored:' }), code(body.text, 'Request body (as stored)'));
  }
  return section;
}

function querySection(event) {
  const q = (event.request && event.request.queryParameters) || {};
  const keys = Object.keys(q);
  if (!keys.length) return null;
  return h('section', { 'aria-labelledby': 'query-title' },
    h('h2', { id: 'query-title', text: 'Query parameters' }),
    definitions(keys.map((k) => [k, (q[k] || []).join(', ')])));
}

function responseFacts(response) {
  if (!response) return [['Response', h('span', { class: 'muted', text: 'no response record (the proxy may not send them, or it has not arrived)' })]];
  return [
    ['Status', h('span', { class: `status ${fmt.statusClass(response.status)}`, text: response.status ? String(response.status) : 'no response' })],
    ['Duration', fmt.millis(response.durationMs)],
    ['Response size', response.responseBytes !== undefined ? fmt.bytes(response.responseBytes) : ''],
    ['Full request body', response.requestBodyBytes !== undefined ? `${fmt.bytes(response.requestBodyBytes)}, SHA-256 ${response.requestBodySHA256 || '?'}` : ''],
    ['Error', response.error || ''],
  ];
}

/**
 * For an exec/attach request, finds its recording: the session whose cast
 * header carries this event's key (`kubescribe.eventKey`).
 */
async function findSession(event, signal) {
  const k = event.kubernetes || {};
  const key = event.kubescribe && event.kubescribe.key;
  if (!key || !['exec', 'attach'].includes(k.Subresource)) return null;
  const page = await getJson('/api/v1/sessions', { namespace: k.Namespace, pod: k.Name, limit: 1000 }, signal);
  return page.sessions.find((s) => s.header && s.header.kubescribe && s.header.kubescribe.eventKey === key) || null;
}

/** Renders `/ui/events/{id}`; returns a function that stops it. */
export function renderEvent(main, route, ctx) {
  const controller = new AbortController();
  replace(main, h('p', { class: 'muted', text: 'Loading event…' }));
  document.title = 'Event · kubescribe recorder';
  getText(`/api/v1/events/${encodeURIComponent(route.id)}`, {}, controller.signal).then((text) => {
    const row = JSON.parse(text);
    const e = row.event;
    const r = row.response;
    const back = h('p', {}, h('a', { href: ctx.lastEventsUrl(), text: '← Back to events' }));
    if (!e) {
      replace(main, back, h('h1', { tabindex: '-1', text: 'Response record' }),
        definitions(responseFacts(r)),
        h('h2', { text: 'Raw JSON' }), code(fmt.prettyJson(text) || text, 'Raw JSON'));
      return;
    }
    const k = e.kubernetes || {};
    const src = e.source || {};
    const t = fmt.fromUnix(e.timestamp);
    const target = fmt.namespacedName(k, k.Verb === 'create' ? fmt.bodyObjectName(e.request && e.request.body) : '');
    const title = `${k.Verb || (e.request && e.request.method) || 'request'} ${fmt.resource(k)} ${target}`.trim();
    document.title = `${title} · kubescribe recorder`;
    replace(main,
      back,
      h('h1', { tabindex: '-1', text: title }),
      h('div', { class: 'columns' },
        h('section', { 'aria-labelledby': 'who-title' },
          h('h2', { id: 'who-title', text: 'Request' }),
          definitions([
            ['Time', h('time', { datetime: t.iso, text: t.text })],
            ['Caller', fmt.caller(src)],
            ['Node', src.node || ''],
            ['Node ID', src.nodeID || ''],
            ['User ID', src.nodeUserID !== undefined ? String(src.nodeUserID) : ''],
            ['User agent', e.userAgent || ''],
            ['Method', e.request && e.request.method],
            ['Path', e.request && h('code', { class: 'wrap', text: e.request.path })],
            ['Recorder', (e.destination && e.destination.node) || ''],
            ['Request ID', e.kubescribe && e.kubescribe.requestID],
            ['Record id', row.id],
          ])),
        h('section', { 'aria-labelledby': 'k8s-title' },
          h('h2', { id: 'k8s-title', text: 'Kubernetes' }),
          definitions([
            ['Verb', k.Verb],
            ['API', k.IsResourceRequest ? [k.APIPrefix, k.APIGroup, k.APIVersion].filter(Boolean).join('/') : 'non-resource request'],
            ['Resource', k.Resource],
            ['Subresource', k.Subresource],
            ['Namespace', k.Namespace],
            ['Name', k.Name],
            ['Label selector', k.LabelSelector],
            ['Field selector', k.FieldSelector],
          ])),
        h('section', { 'aria-labelledby': 'resp-title' },
          h('h2', { id: 'resp-title', text: 'Response' }),
          definitions(responseFacts(r)))),
      h('div', { id: 'session-link' }),
      bodySection(e),
      querySection(e),
      h('section', { 'aria-labelledby': 'raw-title' },
        h('h2', { id: 'raw-title', text: 'Raw JSON' }),
        h('p', { class: 'muted', text: 'The event and its response record exactly as the query API returned them (re-indented only).' }),
        code(fmt.prettyJson(text) || text, 'Raw event JSON')));
    ctx.focusHeading();
    findSession(e, controller.signal).then((s) => {
      const slot = main.querySelector('#session-link');
      if (s && slot) {
        slot.append(h('p', { class: 'callout' }, `This ${k.Subresource} session was recorded: `,
          h('a', { href: `/ui/sessions/${encodeURIComponent(s.id)}`, text: 'play the recording' }),
          s.state === 'live' ? ' (still live)' : ''));
      }
    }).catch(() => { /* the link is a convenience; the event is shown regardless */ });
  }).catch((err) => ctx.fail(err));
  return () => controller.abort();
}
