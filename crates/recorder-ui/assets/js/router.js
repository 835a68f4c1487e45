// Client-side routes under /ui/, kept in the URL (path + query) so that any
// view can be bookmarked, shared and reloaded.

/** Parses the current location into `{name, id, params}`. */
export function currentRoute(loc = window.location) {
  const params = new URLSearchParams(loc.search);
  const parts = loc.pathname.replace(/\/+$/, '').split('/').filter(Boolean);
  if (parts.length === 0 || (parts.length === 1 && parts[0] === 'ui')) return { name: 'events', params };
  if (parts[0] !== 'ui') return { name: 'not-found', params };
  const [, section, id, ...rest] = parts;
  if (rest.length === 0) {
    if (section === 'events' && !id) return { name: 'events', params };
    if (section === 'events') return { name: 'event', id: decodeURIComponent(id), params };
    if (section === 'sessions' && !id) return { name: 'sessions', params };
    if (section === 'sessions') return { name: 'session', id: decodeURIComponent(id), params };
  }
  return { name: 'not-found', params };
}

let onChange = () => {};

/** Goes to `url` (same origin) without reloading, then re-renders. */
export function navigate(url, { replace = false } = {}) {
  if (replace) window.history.replaceState(null, '', url);
  else window.history.pushState(null, '', url);
  onChange({ navigated: true });
}

/** Updates the URL's query without re-rendering (state already shown). */
export function setQuery(params) {
  const qs = params.toString();
  window.history.replaceState(null, '', window.location.pathname + (qs ? `?${qs}` : ''));
}

/** Starts routing: `render` runs now and after every navigation. */
export function start(render) {
  onChange = render;
  window.addEventListener('popstate', () => render({ navigated: true }));
  document.addEventListener('click', (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const a = e.target instanceof Element ? e.target.closest('a[href]') : null;
    if (!a || a.target || a.hasAttribute('download')) return;
    const url = new URL(a.href, window.location.href);
    if (url.origin !== window.location.origin || !(url.pathname === '/ui' || url.pathname.startsWith('/ui/'))) return;
    if (url.pathname.startsWith('/ui/assets/')) return;
    e.preventDefault();
    navigate(url.pathname + url.search + url.hash);
  });
  render({ navigated: false });
}
