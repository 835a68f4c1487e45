// Unit tests of the UI's pure modules, run by `node --test` (Node's built-in
// runner; nothing to download) from tests/js_units.rs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normaliseCast, resizeOrder } from '../../assets/js/cast.js';
import * as fmt from '../../assets/js/format.js';
import { compareIds, dayOfId, filtersFrom } from '../../assets/js/events.js';

const k8sHeader = { version: 2, width: 100, height: 30, kubernetes: { PodName: 'p', Namespace: 'n', Container: 'c', SessionType: 'exec' } };

test('kubernetes casts have their height-first resizes swapped', () => {
  const cast = [JSON.stringify(k8sHeader), '[0.1,"o","hi"]', '[0.2,"r","50x200"]', ''].join('\n');
  const out = normaliseCast(cast);
  const lines = out.text.trim().split('\n');
  assert.deepEqual(JSON.parse(lines[2]), [0.2, 'r', '200x50']);
  assert.equal(lines[1], '[0.1,"o","hi"]');
  assert.equal(out.lastTime, 0.2);
  assert.equal(out.skipped, 0);
});

test('spec-order casts and explicit width-first headers are left alone', () => {
  for (const header of [{ version: 2, width: 80, height: 24 }, { ...k8sHeader, kubescribe: { resizeOrder: 'width-first' } }]) {
    const out = normaliseCast(`${JSON.stringify(header)}\n[1,"r","90x40"]\n`);
    assert.deepEqual(JSON.parse(out.text.trim().split('\n')[1]), [1, 'r', '90x40']);
  }
  assert.equal(resizeOrder({ version: 2, kubescribe: { resizeOrder: 'height-first' } }), 'height-first');
});

test('non-TTY headers get a playable size; bad lines are skipped, not fatal', () => {
  const out = normaliseCast(`${JSON.stringify({ ...k8sHeader, width: 0, height: 0 })}\nnot json\n[1,"o"]\n[2,"r","wide"]\n[3,"o","x"]\n[4,"o","partial`);
  const [header, ...events] = out.text.trim().split('\n');
  assert.equal(JSON.parse(header).width, 80);
  assert.equal(JSON.parse(header).height, 24);
  assert.deepEqual(events, ['[3,"o","x"]']);
  assert.equal(out.skipped, 4);
  assert.throws(() => normaliseCast('[1,"o","x"]\n'), /not asciicast version 2|header/);
  assert.throws(() => normaliseCast(''), /header/);
});

test('prettyJson re-indents without touching literals', () => {
  assert.equal(fmt.prettyJson('{"a":[1,2.50,{}],"b":{"c":"x, y: {z}"},"n":12345678901234567890,"e":[]}'),
    '{\n  "a": [\n    1,\n    2.50,\n    {}\n  ],\n  "b": {\n    "c": "x, y: {z}"\n  },\n  "n": 12345678901234567890,\n  "e": []\n}');
  assert.equal(fmt.prettyJson('"a\\"b"'), '"a\\"b"');
  assert.equal(fmt.prettyJson('not json'), null);
  assert.equal(fmt.prettyJson('{"a":1'), null);
});

test('decodeBody: empty, JSON, text, binary, invalid base64', () => {
  const b64 = (s) => Buffer.from(s).toString('base64');
  assert.equal(fmt.decodeBody('').kind, 'empty');
  assert.equal(fmt.decodeBody(null).kind, 'empty');
  const json = fmt.decodeBody(b64('{"kind":"Pod","x":"é"}'));
  assert.equal(json.kind, 'json');
  assert.equal(json.text, '{\n  "kind": "Pod",\n  "x": "é"\n}');
  assert.equal(json.size, 23);
  assert.deepEqual(fmt.decodeBody(b64('apiVersion: v1\nkind: Pod\n')), { kind: 'text', text: 'apiVersion: v1\nkind: Pod\n', size: 25 });
  const bin = fmt.decodeBody(Buffer.from([0x6b, 0x38, 0x73, 0x00, 0xff, 0xfe]).toString('base64'));
  assert.equal(bin.kind, 'binary');
  assert.match(bin.text, /^00000000 {2}6b 38 73 00 ff fe +k8s\.\.\.$/);
  assert.equal(fmt.decodeBody('***').kind, 'invalid');
});

test('display helpers', () => {
  assert.equal(fmt.caller({ nodeUser: 'alice@example.com', nodeTags: ['tag:x'] }), 'alice@example.com');
  assert.equal(fmt.caller({ nodeTags: ['tag:ci', 'tag:prod'] }), 'tag:ci, tag:prod');
  assert.equal(fmt.resource({ IsResourceRequest: true, Resource: 'pods', Subresource: 'exec' }), 'pods/exec');
  assert.equal(fmt.resource({ IsResourceRequest: false, Path: '/version' }), '/version');
  assert.equal(fmt.namespacedName({ Namespace: 'default', Name: 'web', Verb: 'get' }), 'default/web');
  assert.equal(fmt.namespacedName({ Namespace: 'default', Name: '', Verb: 'list' }), 'default/*');
  assert.equal(fmt.namespacedName({ Namespace: 'default', Name: '', Verb: 'create' }, 'web'), 'default/web');
  assert.equal(fmt.namespacedName({ Namespace: 'default', Name: '', Verb: 'create' }), 'default');
  assert.equal(fmt.bodyObjectName(Buffer.from('{"metadata":{"name":"web"}}').toString('base64')), 'web');
  assert.equal(fmt.bodyObjectName('@@'), '');
  assert.equal(fmt.utc(new Date(Date.UTC(2026, 0, 31, 12, 0, 5))), '2026-01-31 12:00:05Z');
  assert.equal(fmt.fromUnix(1767225600).text, '2026-01-01 00:00:00Z');
  assert.equal(fmt.duration(4.25), '4.3 s');
  assert.equal(fmt.duration(125), '2 min 05 s');
  assert.equal(fmt.bytes(1536), '1.5 KiB');
  assert.equal(fmt.millis(12.5), '13 ms');
  assert.equal(fmt.statusClass(201), 'status-ok');
  assert.equal(fmt.statusClass(101), 'status-ok');
  assert.equal(fmt.statusClass(403), 'status-denied');
  assert.equal(fmt.statusClass(0), 'status-error');
  assert.equal(fmt.fromInputValue('2026-01-31T12:00'), '2026-01-31T12:00:00Z');
  assert.equal(fmt.toInputValue('2026-01-31T12:00:00Z'), '2026-01-31T12:00:00');
  assert.equal(fmt.toInputValue('1767225600'), '2026-01-01T00:00:00');
  assert.equal(fmt.fromInputValue('garbage'), '');
});

test('record ids compare by commit order', () => {
  const a = 'e-0190f0c1a2b37c4d8e9f000000000001-2';
  const b = 'e-0190f0c1a2b37c4d8e9f000000000001-10';
  const c = 'e-0190f0c1a2b37c4d8e9f000000000002-0';
  assert.ok(compareIds(b, a) > 0);
  assert.ok(compareIds(c, b) > 0);
  assert.ok(compareIds(a, c) < 0);
  assert.equal(compareIds(a, a), 0);
  const f = filtersFrom(new URLSearchParams('verb=delete&resource=deployments&live=1&bogus=x&q='));
  assert.deepEqual(f, { verb: 'delete', resource: 'deployments' });
});

test('a record id names the UTC day its segment is stored under (its UUIDv7 time)', () => {
  // 0x019b76daa800 ms = 2026-01-01T00:00:00Z.
  assert.equal(0x019b76daa800, Date.UTC(2026, 0, 1));
  assert.equal(dayOfId('e-019b76daa80070008000000000000000-3'), '2026-01-01');
  assert.equal(dayOfId('r-019b76daa7ff70008000000000000000-0'), '2025-12-31');
  for (const bad of ['', 'e-', 'e-xyz-1', 'e-019B76DAA80070008000000000000000-1', 'e-019b76daa800-1', null, undefined]) {
    assert.equal(dayOfId(bad), null, String(bad));
  }
});
