// kubescribe recorder UI: routes URLs under /ui/ to views, and turns API
// refusals into a clear "not authorised" page.

import { h, replace } from './js/dom.js';
import { currentRoute, start } from './js/router.js';
import { renderEvents } from './js/events.js';
import { renderEvent } from './js/event.js';
import { renderSessions } from './js/sessions.js';
import { renderSession } from './js/session.js';

const main = document.getElementById('main');
let stop = () => {};
let lastEvents = '/ui/events';
let lastSessions = '/ui/sessions';

function focusHeading() {
  const heading = main.querySelector('h1');
  if (heading && document.body.dataset.navigated === 'true') heading.focus({ preventScroll: false });
}

/** The page for an API error: refusals get their own explanation. */
function renderError(err) {
  stop();
  stop = () => {};
  if (err && err.refused) {
    document.title = 'Not authorised · kubescribe recorder';
    replace(main,
      h('section', { class: 'refused', 'aria-labelledby': 'refused-title' },
        h('h1', { id: 'refused-title', tabindex: '-1', text: 'Not authorised' }),
        h('p', { text: 'You are not allowed to read recordings on this recorder. Ask an operator to add your identity to the recorder\u2019s --allow-readers list.' }),
        h('p', {}, 'The recorder answered ', h('strong', { text: `HTTP ${err.status}` }), ':'),
        h('pre', { class: 'code', id: 'refused-reason', text: err.message })));
  } else {
    document.title = 'Error · kubescribe recorder';
    replace(main,
      h('section', { class: 'failure', 'aria-labelledby': 'error-title' },
        h('h1', { id: 'error-title', tabindex: '-1', text: err && err.status === 404 ? 'Not found' : 'Something went wrong' }),
        h('p', { text: err && err.message ? err.message : String(err) }),
        h('p', {}, h('a', { href: '/ui/events', text: 'Go to the events list' }))));
  }
  main.querySelector('h1').focus();
}

const ctx = {
  fail: (err) => {
    if (err && err.name === 'AbortError') return;
    renderError(err);
  },
  focusHeading,
  lastEventsUrl: () => lastEvents,
  lastSessionsUrl: () => lastSessions,
};

function render({ navigated }) {
  stop();
  stop = () => {};
  document.body.dataset.navigated = String(navigated);
  const route = currentRoute();
  for (const a of document.querySelectorAll('nav a[data-nav]')) {
    const active = a.dataset.nav === route.name || `${a.dataset.nav}` === `${route.name}s`;
    if (active) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const here = window.location.pathname + window.location.search;
  switch (route.name) {
    case 'events': lastEvents = here; stop = renderEvents(main, route, ctx); break;
    case 'event': stop = renderEvent(main, route, ctx); break;
    case 'sessions': lastSessions = here; stop = renderSessions(main, route, ctx); break;
    case 'session': stop = renderSession(main, route, ctx); break;
    default:
      document.title = 'Not found · kubescribe recorder';
      replace(main, h('h1', { tabindex: '-1', text: 'Not found' }),
        h('p', {}, 'There is no page at this address. ', h('a', { href: '/ui/events', text: 'Go to the events list' })));
  }
  focusHeading();
}

start(render);
