// cjm_workers: running jobs' elapsed times tick in the browser between server updates (no requests are made).
(function () {
  function fmt(s) {
    s = Math.max(0, s);
    if (s < 60) return s.toFixed(1) + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min ' + Math.floor(s % 60) + ' s';
    return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
  }
  function tick() {
    const now = Date.now();
    document.querySelectorAll('.cjm-elapsed[data-since]:not([data-until])').forEach(function (e) {
      e.textContent = fmt((now - Date.parse(e.dataset.since)) / 1000);
    });
  }
  setInterval(tick, 500);
})();

// Live updates never replace a control a person is pressing, nor one the pointer is on for a moment: an out-of-band
// swap whose target holds it waits (the latest one per target) until the press ends, or at most HOVER_MS while the
// pointer only rests on it, so a click (down and up on the same element) is never lost to an update in between.
(function () {
  const CONTROLS = 'button, a, input, select, textarea, summary, [role=button]';
  const HOVER_MS = 250;
  let pressed = null, hovered = null, hoverTimer = null;
  const waiting = new Map();  // target id -> the latest fragment for it
  const control = (el) => (el && el.closest) ? el.closest(CONTROLS) : null;
  const holds = (target, c) => c && target.contains(c);
  function flush(force) {
    for (const [id, frag] of Array.from(waiting)) {
      const el = document.getElementById(id);
      if (!el) { waiting.delete(id); continue; }
      if (holds(el, pressed) || (!force && holds(el, hovered))) continue;
      waiting.delete(id);
      const fresh = frag.firstElementChild;
      el.replaceWith(frag);
      if (fresh && window.htmx) htmx.process(fresh);
      document.dispatchEvent(new Event('cjm:swapped'));
    }
  }
  const later = () => setTimeout(() => flush(false), 0);  // after the click that a release makes has been dispatched
  document.addEventListener('pointerdown', (e) => { pressed = control(e.target); }, true);
  document.addEventListener('pointerover', (e) => { hovered = control(e.target); }, true);
  document.addEventListener('pointerout', (e) => {
    if (hovered && !hovered.contains(e.relatedTarget)) { hovered = null; later(); }
  }, true);
  ['pointerup', 'pointercancel'].forEach((t) => document.addEventListener(t, () => { pressed = null; later(); }, true));
  document.addEventListener('htmx:oobBeforeSwap', (e) => {
    const target = e.detail.target, frag = e.detail.fragment;
    const whole = frag && frag.firstElementChild && frag.firstElementChild.id === target.id;  // an outerHTML swap
    if (!whole || !target.id) return;
    if (holds(target, pressed) || holds(target, hovered)) {
      waiting.set(target.id, frag.cloneNode(true));
      e.detail.shouldSwap = false;
      if (!holds(target, pressed)) { clearTimeout(hoverTimer); hoverTimer = setTimeout(() => flush(true), HOVER_MS); }
    }
  });
})();

// The overview stays bounded however long it is open: the newest cards and rows are kept, older ones dropped.
(function () {
  const LIMITS = { 'cjm-jobs': 30, 'cjm-rows': 100 };
  function trim() {
    for (const [id, n] of Object.entries(LIMITS)) {
      const el = document.getElementById(id);
      if (!el) continue;
      while (el.children.length > n) el.lastElementChild.remove();
    }
  }
  document.addEventListener('htmx:oobAfterSwap', trim);
})();

// One event stream serves every page, and each page shows only some of what it updates (a page of the job list, one
// job): an htmx extension drops the out-of-band parts whose target is not on this page before htmx swaps them in.
(function () {
  if (!window.htmx) return;
  function targetOf(el) {
    const oob = el.getAttribute('hx-swap-oob') || 'true';
    const i = oob.indexOf(':');
    return i > 0 ? oob.slice(i + 1) : (el.id ? '#' + CSS.escape(el.id) : null);
  }
  htmx.defineExtension('cjm-oob', {
    transformResponse: function (text) {
      if (text.indexOf('hx-swap-oob') < 0) return text;
      const t = document.createElement('template');
      t.innerHTML = text;
      for (const node of Array.from(t.content.children)) {
        const el = node.tagName === 'TEMPLATE' ? node.content.firstElementChild : node;
        const sel = el && el.hasAttribute('hx-swap-oob') ? targetOf(el) : null;
        if (sel && !document.querySelector(sel)) node.remove();
      }
      return t.innerHTML;
    }
  });
})();

// Moments read as people read them: "3 min ago", with the exact local time on hover (the server writes UTC).
(function () {
  function ago(ms) {
    const s = Math.round(ms / 1000);
    if (s < 5) return 'just now';
    if (s < 60) return s + ' s ago';
    if (s < 3600) return Math.floor(s / 60) + ' min ago';
    if (s < 86400) return Math.floor(s / 3600) + ' h ago';
    return null;
  }
  function update() {
    const now = Date.now();
    document.querySelectorAll('time.cjm-time[datetime]').forEach(function (t) {
      const at = Date.parse(t.getAttribute('datetime'));
      if (isNaN(at)) return;
      const local = new Date(at);
      t.title = local.toLocaleString();
      t.textContent = ago(now - at) || local.toLocaleDateString() + ' ' + local.toLocaleTimeString();
    });
  }
  document.addEventListener('DOMContentLoaded', update);
  document.addEventListener('htmx:oobAfterSwap', update);
  setInterval(update, 5000);
})();

// "Cancel selected": the checked rows are kept here by job id, so a live update that redraws a row (its status changed)
// keeps its box checked; rows that can no longer be cancelled lose their box and leave the selection.
(function () {
  const selected = new Set();
  function sync() {
    const boxes = document.querySelectorAll('input.cjm-select');
    const shown = new Set();
    boxes.forEach((b) => { shown.add(b.value); b.checked = selected.has(b.value); });
    for (const id of Array.from(selected)) if (!shown.has(id)) selected.delete(id);  // finished, or off this page
    document.querySelectorAll('.cjm-cancel-selected').forEach((b) => {
      b.disabled = selected.size === 0;
      b.textContent = selected.size ? 'Cancel selected (' + selected.size + ')' : 'Cancel selected';
    });
    document.querySelectorAll('input.cjm-select-all').forEach((a) => {
      a.checked = boxes.length > 0 && selected.size === boxes.length;
      a.indeterminate = selected.size > 0 && selected.size < boxes.length;
    });
  }
  window.cjmSelected = () => Array.from(selected);
  window.cjmClearSelection = () => { selected.clear(); sync(); };
  document.addEventListener('change', (e) => {
    const t = e.target;
    if (t.matches && t.matches('input.cjm-select')) { if (t.checked) selected.add(t.value); else selected.delete(t.value); sync(); }
    else if (t.matches && t.matches('input.cjm-select-all')) {
      document.querySelectorAll('input.cjm-select').forEach((b) => { if (t.checked) selected.add(b.value); else selected.delete(b.value); });
      sync();
    }
  });
  document.addEventListener('DOMContentLoaded', sync);
  document.addEventListener('htmx:oobAfterSwap', sync);
  document.addEventListener('cjm:swapped', sync);
})();
