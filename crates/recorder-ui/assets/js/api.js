// Same-origin, read-only calls to the recorder's query API (/api/v1).

/** An API answer other than 2xx: `status` and the recorder's own message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }

  /** Whether the recorder refused the caller (the read policy applies). */
  get refused() {
    return this.status === 401 || this.status === 403;
  }
}

/** `/api/v1/…?k=v` with empty values left out. */
export function apiUrl(path, params = {}) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, String(v));
  }
  return url.pathname + url.search;
}

async function request(path, params, signal) {
  let res;
  try {
    res = await fetch(apiUrl(path, params), {
      method: 'GET',
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { Accept: 'application/json' },
      signal,
    });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, `The recorder could not be reached (${e && e.message ? e.message : e}).`);
  }
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try {
      const body = await res.json();
      if (body && typeof body.error === 'string') message = body.error;
    } catch { /* not JSON */ }
    throw new ApiError(res.status, message);
  }
  return res;
}

/** GETs JSON; throws ApiError on any non-2xx answer. */
export async function getJson(path, params = {}, signal = undefined) {
  const res = await request(path, params, signal);
  return res.json();
}

/** GETs text (for casts and for showing raw JSON exactly as returned). */
export async function getText(path, params = {}, signal = undefined) {
  const res = await request(path, params, signal);
  return res.text();
}
