// Preparing a stored asciicast v2 recording for asciinema-player.
//
// Kubernetes recordings (Tailscale's and kubescribe's proxies) write resize
// events height first, "<rows>x<cols>", while the asciicast spec and the
// player read "<cols>x<rows>". The header says which applies (see
// event_model::CastHeader::resize_order): `kubescribe.resizeOrder` when
// present, otherwise height-first exactly when the header has a `kubernetes`
// object. Non-TTY sessions have a 0x0 header, which the player cannot size.

/** `'height-first'` or `'width-first'` for a parsed cast header. */
export function resizeOrder(header) {
  const stated = header && header.kubescribe && header.kubescribe.resizeOrder;
  if (stated === 'height-first' || stated === 'width-first') return stated;
  return header && header.kubernetes ? 'height-first' : 'width-first';
}

/**
 * Returns `{text, header, skipped, lastTime}`: the cast with resize events in
 * spec order and a playable header size. Lines that are not JSON arrays are
 * dropped (and counted in `skipped`); the stored file is never changed.
 */
export function normaliseCast(text, { defaultCols = 80, defaultRows = 24 } = {}) {
  const lines = text.split('\n');
  let header;
  try {
    header = JSON.parse(lines[0]);
  } catch {
    throw new Error('The recording has no valid asciicast v2 header line.');
  }
  if (!header || typeof header !== 'object' || header.version !== 2) {
    throw new Error('The recording is not asciicast version 2.');
  }
  const swap = resizeOrder(header) === 'height-first';
  const playable = { ...header };
  if (!(playable.width > 0) || !(playable.height > 0)) {
    playable.width = defaultCols;
    playable.height = defaultRows;
  }
  const out = [JSON.stringify(playable)];
  let skipped = 0;
  let lastTime = 0;
  for (let i = 1; i < lines.length; i += 1) {
    const line = lines[i];
    if (line === '') continue;
    let ev;
    try { ev = JSON.parse(line); } catch { skipped += 1; continue; }
    if (!Array.isArray(ev) || ev.length < 3 || typeof ev[0] !== 'number') { skipped += 1; continue; }
    lastTime = ev[0];
    if (ev[1] === 'r' && typeof ev[2] === 'string') {
      const m = /^(\d+)x(\d+)$/.exec(ev[2]);
      if (!m) { skipped += 1; continue; }
      if (swap) { out.push(JSON.stringify([ev[0], 'r', `${m[2]}x${m[1]}`])); continue; }
    }
    out.push(line);
  }
  return { text: `${out.join('\n')}\n`, header, skipped, lastTime };
}
