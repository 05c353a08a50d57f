// Progressive enhancement only: every page works without this.
// Times in the viewer's zone.
for (const t of document.querySelectorAll('time[datetime]')) {
  const d = new Date(t.dateTime);
  if (!isNaN(d)) { t.title = t.dateTime; t.textContent = d.toLocaleString(); }
}
// A running action follows its server-sent events and reloads when it ends.
const live = document.querySelector('[data-events]');
if (live && window.EventSource) {
  const es = new EventSource(live.dataset.events);
  es.addEventListener('progress', (e) => {
    const p = JSON.parse(e.data);
    for (const k of ['phase', 'bytes', 'rate']) {
      const el = document.getElementById(k);
      if (el && p[k] !== undefined) el.textContent = p[k];
    }
    // The plugin's new log lines, as text (never as HTML).
    const logs = document.querySelector('#logs tbody');
    if (logs && p.logs && p.logs.length) {
      const empty = logs.querySelector('td[colspan]');
      if (empty) empty.parentElement.remove();
      for (const l of p.logs) {
        const tr = document.createElement('tr');
        for (const v of [l.at, l.level, l.message]) {
          const td = document.createElement('td');
          td.textContent = v;
          tr.appendChild(td);
        }
        logs.appendChild(tr);
      }
    }
    const bar = document.getElementById('bar');
    if (bar && p.total) { bar.max = p.total; bar.value = p.done; }
    if (p.phase === 'Completed' || p.phase === 'Failed') { es.close(); location.reload(); }
  });
}
