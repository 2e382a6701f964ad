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
