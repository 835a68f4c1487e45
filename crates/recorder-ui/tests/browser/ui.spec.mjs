// Real-browser test of the kubescribe recorder UI: Debian's Chromium driven
// by playwright-core (no test runner, no browser download). Started by
// crates/recorder-server/tests/ui_browser.rs, which runs two real recorders
// and uploads events and sessions first. Exits non-zero with a message on the
// first failed check; screenshots go to $ARTIFACTS.

import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { pathToFileURL } from 'node:url';

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (this script is started by crates/recorder-server/tests/ui_browser.rs)`);
  return v;
}

const RECORDER = need('RECORDER_URL');
const GUARDED = need('GUARDED_URL');
const UPLOAD_TOKEN = need('UPLOAD_TOKEN');
const READ_TOKEN = need('READ_TOKEN');
const EXPECTED_EVENTS = Number(need('EXPECTED_EVENTS'));
const EXPECTED_CAST = fs.readFileSync(need('EXPECTED_CAST'));
const ARTIFACTS = need('ARTIFACTS');
const coreDir = need('PLAYWRIGHT_CORE_DIR');
// Screenshots of this run only.
fs.mkdirSync(ARTIFACTS, { recursive: true });
for (const f of fs.readdirSync(ARTIFACTS)) if (f.endsWith('.png')) fs.rmSync(path.join(ARTIFACTS, f));
const { chromium } = await import(pathToFileURL(path.join(coreDir, 'index.mjs')).href);

let step = 'start';
const log = (msg) => console.log(`ok - ${msg}`);
function check(cond, msg) {
  if (!cond) throw new Error(`check failed in "${step}": ${msg}`);
}

const context = await chromium.launchPersistentContext(need('USER_DATA_DIR'), {
  executablePath: need('CHROMIUM'),
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1366, height: 800 },
  acceptDownloads: true,
});
const pageErrors = [];
await context.addInitScript(() => {
  window.__csp = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI} (${e.sourceFile}:${e.lineNumber})`);
  });
});
const page = context.pages()[0] || await context.newPage();
page.on('pageerror', (e) => pageErrors.push(String(e)));
page.setDefaultTimeout(15000);

async function shot(name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}
async function noCspViolations() {
  const v = await page.evaluate(() => window.__csp || []);
  check(v.length === 0, `Content-Security-Policy violations: ${v.join('; ')}`);
  check(pageErrors.length === 0, `uncaught page errors: ${pageErrors.join('; ')}`);
}
const rows = (sel = 'table.events-table tbody tr[data-id]') => page.locator(sel);
// Every cast the browser fetches is a viewing the recorder records as an event.
let castRequests = 0;
context.on('request', (r) => {
  if (r.method() === 'GET' && /^\/api\/v1\/sessions\/[0-9a-f]{32}\/cast$/.test(new URL(r.url()).pathname)) castRequests += 1;
});
async function viewings() {
  const res = await fetch(`${RECORDER}/api/v1/events?verb=get&reads=only&limit=1000`);
  check(res.status === 200, `GET /api/v1/events?verb=get&reads=only: ${res.status}`);
  return (await res.json()).events.map((row) => row.event)
    .filter((e) => e.kubescribe && e.kubescribe.auditOf && e.kubescribe.auditOf.session);
}
async function waitForRows(n, sel) {
  await page.waitForFunction(([s, count]) => document.querySelectorAll(s).length === count,
    [sel || 'table.events-table tbody tr[data-id]', n]);
}

try {
  // 1. The events list.
  step = 'events list';
  await page.goto(`${RECORDER}/`);
  await waitForRows(EXPECTED_EVENTS);
  check(await page.locator('h1').innerText() === 'API events', 'heading');
  check(await page.getAttribute('nav a[data-nav="events"]', 'aria-current') === 'page', 'nav marks Events as current');
  const header = await page.locator('table.events-table thead th').allInnerTexts();
  check(header.join('|') === 'Time (UTC)|Caller|Node|Verb|Resource|Namespace/name|Status', `columns: ${header}`);
  const first = await rows().first().innerText();
  check(first.includes('secrets') && first.includes('prod/db-password'), `newest first: ${first}`);
  const tagged = await page.locator('tr', { hasText: 'tag:ci' }).innerText();
  check(tagged.includes('list') && tagged.includes('ci-runner.tail1234.ts.net'), `tagged caller row: ${tagged}`);
  for (const id of ['f-since', 'f-until', 'f-caller', 'f-node', 'f-verb', 'f-resource', 'f-namespace', 'f-name', 'f-q']) {
    const label = await page.locator(`label[for="${id}"]`).count();
    check(label === 1, `filter input #${id} has a label`);
  }
  await shot('01-events');
  log(`events list shows ${EXPECTED_EVENTS} events newest first`);

  // 2. Filter by verb and resource; state goes into the URL and survives reload.
  step = 'filter by verb and resource';
  await page.fill('#f-verb', 'delete');
  await page.fill('#f-resource', 'deployments');
  await page.click('button[type="submit"]');
  await page.waitForURL(/\/ui\/events\?verb=delete&resource=deployments$/);
  await waitForRows(1);
  let only = await rows().first().innerText();
  check(only.includes('delete') && only.includes('default/web') && only.includes('200'), `filtered row: ${only}`);
  await page.reload();
  await waitForRows(1);
  check(await page.inputValue('#f-verb') === 'delete', 'verb filter restored from the URL');
  check(await page.inputValue('#f-resource') === 'deployments', 'resource filter restored from the URL');
  await shot('02-events-filtered');
  log('filter by verb=delete resource=deployments: 1 row, survives reload');

  step = 'filter by caller, namespace and text';
  await page.goto(`${RECORDER}/ui/events`);
  await waitForRows(EXPECTED_EVENTS);
  await page.fill('#f-caller', 'tag:ci');
  await page.click('button[type="submit"]');
  await page.waitForURL(/tag=tag%3Aci/);
  await waitForRows(1);
  await page.goto(`${RECORDER}/ui/events?namespace=kube-system&q=COREDNS`);
  await waitForRows(1);
  only = await rows().first().innerText();
  check(only.includes('configmaps') && only.includes('403'), `text filter row: ${only}`);
  check((await page.locator('span.status-denied').count()) === 1, 'a 403 is marked as denied');
  log('filters by caller tag, namespace and free text');

  // 3. Open an event: decoded, pretty-printed body and raw JSON; deep link.
  step = 'event page';
  await page.goto(`${RECORDER}/ui/events?verb=create`);
  await waitForRows(1);
  await rows().first().locator('a').click();
  await page.waitForURL(/\/ui\/events\/e-[0-9a-f]{32}-\d+$/);
  const eventUrl = page.url();
  const bodyPre = page.locator('section:has(h2#body-title) pre');
  await bodyPre.waitFor();
  let body = await bodyPre.innerText();
  check(body.startsWith('{\n  "apiVersion": "apps/v1",\n  "kind": "Deployment",\n  "metadata": {\n    "name": "web",'), `pretty-printed body:\n${body}`);
  check(body.includes('"replicas": 12345678901234567890'), 'large integer kept exactly as sent');
  check(body.includes('"image": "nginx:1.27"'), 'body fully decoded');
  const raw = await page.locator('section:has(h2#raw-title) pre').innerText();
  check(raw.includes('"type": "kubernetes-api-request"') && raw.includes('"type": "kubescribe-api-response"'), 'raw JSON shows event and response record');
  check((await page.locator('#resp-title + dl').innerText()).includes('201'), 'response status 201 shown');
  await page.reload();
  await bodyPre.waitFor();
  body = await bodyPre.innerText();
  check(page.url() === eventUrl && body.includes('"kind": "Deployment"'), 'event deep link survives reload');
  await noCspViolations();
  await shot('03-event');
  log('event page: body base64 → UTF-8 → pretty JSON, raw JSON, deep link survives reload');

  // 4. Live tail picks up a new event within a few polls.
  step = 'live tail';
  await page.goto(`${RECORDER}/ui/events?live=1`);
  await waitForRows(EXPECTED_EVENTS);
  check(await page.isChecked('#f-live'), 'live checkbox reflects the URL');
  const fresh = {
    type: 'kubernetes-api-request', id: '', timestamp: 1767225900, userAgent: 'kubectl',
    request: { method: 'DELETE', path: '/api/v1/namespaces/prod/pods/db-0', body: '', queryParameters: {} },
    kubernetes: { IsResourceRequest: true, Path: '/api/v1/namespaces/prod/pods/db-0', Verb: 'delete', APIPrefix: 'api', APIGroup: '', APIVersion: 'v1', Namespace: 'prod', Resource: 'pods', Subresource: '', Name: 'db-0', Parts: ['pods', 'db-0'], FieldSelector: '', LabelSelector: '' },
    source: { node: 'laptop.tail1234.ts.net', nodeID: 'nAbC123CNTRL', nodeUserID: 4242, nodeUser: 'mallory@example.com' },
    destination: { node: '', nodeID: '' },
  };
  const up = await fetch(`${RECORDER}/v2/event`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${UPLOAD_TOKEN}` }, body: JSON.stringify(fresh) });
  check(up.status === 200, `uploading the live event: ${up.status}`);
  await waitForRows(EXPECTED_EVENTS + 1);
  const top = await rows().first().innerText();
  check(top.includes('mallory@example.com') && top.includes('prod/db-0'), `new event at the top: ${top}`);
  check((await page.locator('p.status').innerText()).includes('1 new'), 'status line announces the new event');
  await shot('04-live-tail');
  log('live tail shows a newly uploaded event at the top');

  step = 'time range';
  await page.goto(`${RECORDER}/ui/events`);
  await waitForRows(EXPECTED_EVENTS + 1);
  await page.fill('#f-since', '2026-01-01T00:01:00');
  await page.click('button[type="submit"]');
  await page.waitForURL(/since=2026-01-01T00%3A01%3A00Z/);
  await waitForRows(1);
  check((await rows().first().innerText()).includes('mallory@example.com'), 'only the event after 00:01 UTC');
  await page.goto(`${RECORDER}/ui/events?until=2026-01-01T00:01:00Z&verb=get`);
  await waitForRows(3);
  const until = await page.inputValue('#f-until');
  check(/^2026-01-01T00:01(:00)?$/.test(until), `time filter restored from the URL (UTC): ${until}`);
  log('time range filters (UTC), restored from the URL');

  // 5. Sessions list: finished and live sessions.
  step = 'sessions list';
  await page.click('nav a[data-nav="sessions"]');
  await page.waitForURL(/\/ui\/sessions$/);
  const sessionRows = 'table.sessions-table tbody tr[data-id]';
  await waitForRows(2, sessionRows);
  const live = await page.locator(`${sessionRows}.is-live`).innerText();
  check(live.includes('Live') && live.includes('prod/db-0') && live.includes('postgres') && live.includes('top'), `live row: ${live}`);
  const done = await page.locator(`${sessionRows}:not(.is-live)`).innerText();
  check(done.includes('alice@example.com') && done.includes('default/web-0') && done.includes('nginx') && done.includes('/bin/sh') && done.includes('Finished'), `finished row: ${done}`);
  check(done.includes(`${EXPECTED_CAST.length} B`) || done.includes('KiB'), `size shown: ${done}`);
  await shot('05-sessions');
  log('sessions list: caller, pod, container, command, duration, size; live session marked');

  // 6. Play the finished session and read the terminal text from the player.
  step = 'session playback';
  await page.locator(`${sessionRows}:not(.is-live) a`).click();
  await page.waitForURL(/\/ui\/sessions\/[0-9a-f]{32}$/);
  const sessionUrl = page.url();
  await page.locator('.ap-player').waitFor();
  // The cast matches its signed manifest (the recorder seals it within its --manifest-interval).
  await page.waitForFunction(() => {
    const badge = document.querySelector('#session-verification');
    return badge && badge.dataset.state === 'verified';
  }, null, { timeout: 20000 });
  const verified = await page.locator('#session-verification').innerText();
  check(verified === 'Verified', `integrity badge: ${verified}`);
  await page.evaluate(() => new Promise((resolve) => {
    // Start playback the way a user does: the player's start overlay.
    const start = document.querySelector('.ap-overlay-start') || document.querySelector('.ap-playback-button');
    start.click();
    resolve();
  }));
  await page.waitForFunction(() => {
    const t = document.querySelector('.ap-term');
    return t && t.textContent.includes('exit');
  });
  const term = await page.evaluate(() => Array.from(document.querySelectorAll('.ap-term .ap-line'), (l) => l.textContent.replace(/\u00a0/g, ' ').trimEnd()));
  const text = term.join('\n');
  check(text.includes('hello from kubescribe'), `terminal text:\n${text}`);
  const wide = term.find((l) => l.includes('WIDE:'));
  check(wide && wide.includes(':END') && wide.trim().length === 89, `the 89-column line fits one row of the 100-column terminal (resize read height first):\n${text}`);
  const cols = await page.evaluate(() => {
    const line = document.querySelector('.ap-term .ap-line');
    return line ? line.textContent.length : 0;
  });
  check(cols === 100, `terminal is 100 columns wide after the height-first resize, got ${cols}`);
  await shot('06-session-playback');
  // The download is the stored file, byte for byte.
  const link = page.locator('a[download]');
  check((await link.getAttribute('href')).endsWith('/cast'), 'download link points at the cast');
  const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
  const saved = fs.readFileSync(await download.path());
  const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');
  check(sha(saved) === sha(EXPECTED_CAST), 'downloaded .cast equals the uploaded bytes');
  check(download.suggestedFilename().endsWith('.cast'), `download name ${download.suggestedFilename()}`);
  await page.reload();
  await page.locator('.ap-player').waitFor();
  check(page.url() === sessionUrl, 'session deep link survives reload');
  await noCspViolations();
  const sessionId = sessionUrl.split('/').pop();
  const seen = await viewings();
  check(seen.length >= Math.max(2, castRequests), `each viewing (player and download) is recorded: ${seen.length} records, ${castRequests} cast requests seen`);
  for (const e of seen) {
    check(e.kubescribe.auditOf.session === sessionId && e.request.path.startsWith(`/api/v1/sessions/${sessionId}/cast`)
      && e.kubernetes.Verb === 'get' && e.source.node === 'loopback' && e.userAgent.includes('Chrome'),
    `viewing record: ${JSON.stringify(e)}`);
  }
  log(`session plays in asciinema-player; terminal text read from the DOM; .cast download is byte-identical; ${seen.length} viewings recorded; "Verified" badge shown`);

  // 6b. The events view shows each day's integrity: today's sealed cast (and segments) verify
  // against the signed manifests; the open segment is pending, not a failure.
  step = 'integrity by day';
  await page.goto(`${RECORDER}/ui/events`);
  await waitForRows(EXPECTED_EVENTS + 1);
  const today = new Date().toISOString().slice(0, 10);
  await page.waitForFunction((date) => {
    const badge = document.querySelector(`.day-verification[data-date="${date}"]`);
    return badge && badge.dataset.state === 'verified';
  }, today, { timeout: 20000 });
  const dayBadge = await page.locator(`.day-verification[data-date="${today}"]`).innerText();
  check(dayBadge === 'Verified', `day integrity badge: ${dayBadge}`);
  const dayTitle = await page.locator(`.day-verification[data-date="${today}"]`).getAttribute('title');
  check(/^\d+ of \d+ segments and casts verified, \d+ pending$/.test(dayTitle), `day badge title: ${dayTitle}`);
  await noCspViolations();
  await shot('06b-integrity-by-day');
  log(`events view: "Integrity by day" badge for ${today} says Verified (${dayTitle})`);
  await page.goto(sessionUrl);
  await page.locator('.ap-player').waitFor();

  step = 'event and session link to each other';
  await page.locator('#event-link a').click();
  await page.waitForURL(/\/ui\/events\/e-/);
  check((await page.locator('h1').innerText()) === 'get pods/exec default/web-0', `exec event heading: ${await page.locator('h1').innerText()}`);
  await page.locator('#session-link a').click();
  await page.waitForURL(sessionUrl);
  await page.locator('.ap-player').waitFor();
  log('the exec event links to its recording and back');

  step = 'live session page';
  await page.goto(`${RECORDER}/ui/sessions?live=true`);
  await waitForRows(1, sessionRows);
  await page.locator(`${sessionRows} a`).click();
  await page.locator('text=This session is still being recorded.').waitFor();
  check(await page.locator('.view-head .badge.live').count() === 1, 'live badge on the session page');
  check(await page.locator('a[download]').count() === 0, 'no download while live');
  await shot('07-session-live');
  log('a live session is marked live and offers no playback yet');

  // 7. An unauthorised caller is refused: the page itself, and the API.
  step = 'refusal';
  const refused = await page.goto(`${GUARDED}/ui/events`);
  check(refused.status() === 403, `GET /ui/events without credentials: ${refused.status()}`);
  check(await page.locator('h1').innerText() === 'Not authorised', 'refusal page heading');
  check((await page.locator('#refused-reason').innerText()).includes('may not read recordings'), 'refusal reason shown');
  check(await page.locator('table').count() === 0, 'no data on the refusal page');
  const api = await fetch(`${GUARDED}/api/v1/events`);
  check(api.status === 403, `API without credentials: ${api.status}`);
  await shot('08-refused');
  log('unauthorised caller gets a 403 "Not authorised" page; the API refuses too');

  step = 'refusal inside the app';
  await context.setExtraHTTPHeaders({ authorization: `Bearer ${READ_TOKEN}` });
  await page.goto(`${GUARDED}/ui/events`);
  await page.locator('text=No events match these filters.').waitFor();
  await context.setExtraHTTPHeaders({ authorization: 'Bearer not-the-read-token-0000' });
  await page.click('nav a[data-nav="sessions"]');
  await page.locator('h1', { hasText: 'Not authorised' }).waitFor();
  check((await page.locator('#refused-reason').innerText()).includes('not a valid read token'), 'API refusal reason shown in the app');
  await shot('09-refused-in-app');
  await context.setExtraHTTPHeaders({});
  log('a read token admits the caller; a wrong one makes the app show "Not authorised"');

  step = 'accessibility basics';
  await page.goto(`${RECORDER}/ui/events`);
  // The uploaded events and the live-tail one (the recorder's records of reads are hidden by
  // default) ...
  await waitForRows(EXPECTED_EVENTS + 1);
  // ... and listed when asked for: the reads of sessions (metadata and casts) as the API lists them.
  const sessionReads = await fetch(`${RECORDER}/api/v1/events?reads=only&verb=get&resource=sessions&limit=1000`);
  const expectedReads = (await sessionReads.json()).events.length;
  check(expectedReads >= (await viewings()).length, 'every cast viewing is among the reads');
  await page.goto(`${RECORDER}/ui/events?reads=only&verb=get&resource=sessions`);
  await waitForRows(expectedReads);
  check(await page.locator('#f-reads').inputValue() === 'only', 'the reads filter is restored from the URL');
  await page.goto(`${RECORDER}/ui/events`);
  await waitForRows(EXPECTED_EVENTS + 1);
  await page.keyboard.press('Tab');
  check(await page.evaluate(() => document.activeElement.className) === 'skip-link', 'first Tab reaches the skip link');
  const captions = await page.locator('table caption').count();
  check(captions === 1, 'table has a caption');
  const th = await page.locator('table thead th[scope="col"]').count();
  check(th === 7, 'column headers are scoped');
  await noCspViolations();
  log('skip link, table caption and scoped headers');

  console.log('all browser checks passed');
} catch (e) {
  try { await shot(`failure-${step.replace(/[^a-z0-9]+/gi, '-')}`); } catch { /* ignore */ }
  console.error(String(e && e.stack ? e.stack : e));
  console.error(`page URL: ${page.url()}`);
  try { console.error(`main text:\n${await page.locator('main').innerText()}`); } catch { /* ignore */ }
  await context.close();
  process.exit(1);
}
await context.close();
