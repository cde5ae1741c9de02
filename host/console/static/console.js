// wapper-host's device console: a device list, a page per device with
// live plots and desired-value forms, and a plugins page. Plain DOM, no
// framework; every text from the host goes in as text, never as HTML.
// Paths are relative, so that the console also works behind a proxy that
// serves the host under a prefix.
'use strict';
(() => {
  const NUMERIC = new Set(['INT', 'FLOAT', 'DOUBLE']);
  const view = document.getElementById('view');
  const live = document.getElementById('live');
  let leave = () => {}; // ends the current page: timers, streams

  // ---- DOM helpers

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    for (const k of kids.flat()) if (k != null && k !== false) e.append(k instanceof Node ? k : String(k));
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    setAttrs(e, attrs);
    return e;
  }
  function setAttrs(e, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k === 'className' ? 'class' : k, v === true ? '' : v);
    }
  }
  const enc = encodeURIComponent;

  function fmtValue(v, type) {
    if (v == null || v === '') return '–';
    if (type === 'FLOAT' || type === 'DOUBLE') {
      const n = Number(v);
      if (Number.isFinite(n)) return Math.abs(n) >= 1e4 ? n.toFixed(0) : String(+n.toPrecision(4));
    }
    return v.length > 32 ? v.slice(0, 31) + '…' : v;
  }
  // fmtSeconds writes a duration in ms below a second, in s above, with
  // two significant digits: "0.21 ms", "1.3 ms", "2.5 s".
  function fmtSeconds(s) {
    return s < 1 ? `${+(s * 1000).toPrecision(2)} ms` : `${+s.toPrecision(2)} s`;
  }
  function fmtTime(t) {
    if (!t) return '';
    const d = new Date(t);
    return isNaN(d) ? '' : d.toLocaleTimeString();
  }
  // ---- requests and the token

  class HTTPError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  // api fetches JSON; an answer other than 2xx throws with the error text
  // of the REST API's JSON error, and a 401 asks for the token.
  async function api(path, opts = {}) {
    const res = await fetch(path, Object.assign({}, opts, { headers: wapperToken.headers(opts.headers), cache: 'no-store' }));
    let body = null;
    try { body = await res.json(); } catch { /* not JSON */ }
    if (!res.ok) {
      const msg = (body && body.error) || `${res.status} ${res.statusText}`;
      if (res.status === 401) wapperToken.ask(msg);
      throw new HTTPError(res.status, msg);
    }
    return body;
  }

  wapperToken.init('wapper-console-token', () => route());

  // stream reads server-sent events with fetch (EventSource cannot send
  // the Authorization header) until signal aborts, connecting again with
  // a growing delay. onOpen runs on every connection, onEvent per event.
  async function stream(url, signal, onOpen, onEvent) {
    let delay = 1000;
    while (!signal.aborted) {
      try {
        const res = await fetch(url, { headers: wapperToken.headers({ Accept: 'text/event-stream' }), signal, cache: 'no-store' });
        if (!res.ok || !res.body) {
          let msg = `${res.status} ${res.statusText}`;
          try { msg = (await res.json()).error || msg; } catch { /* not JSON */ }
          if (res.status === 401) wapperToken.ask(msg);
          throw new Error(msg);
        }
        setLive(true, 'live');
        delay = 1000;
        onOpen();
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let type = 'message', data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('event:')) type = line.slice(6).trim();
              else if (line.startsWith('data:')) data += line.slice(5).trim();
            }
            if (data) {
              try { onEvent(type, JSON.parse(data)); } catch (err) { console.warn('event', type, err); }
            }
          }
        }
        setLive(false, 'stream ended; reconnecting');
      } catch (err) {
        if (signal.aborted) return;
        setLive(false, 'reconnecting: ' + err.message);
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(2 * delay, 15000);
    }
  }
  function setLive(on, text) {
    live.className = on ? 'live on' : 'live';
    live.textContent = text;
  }

  // ---- pages

  function route() {
    leave();
    leave = () => {};
    setLive(false, '');
    const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
    const page = parts[0] === 'device' && parts.length === 3 ? 'device' : parts[0] === 'plugins' ? 'plugins' : 'devices';
    for (const a of document.querySelectorAll('nav a')) a.classList.toggle('current', a.dataset.nav === page);
    if (page === 'device') leave = devicePage(parts[1], parts[2]);
    else if (page === 'plugins') leave = pluginsPage();
    else leave = listPage();
  }

  // every runs load now and then every ms milliseconds, one at a time.
  function every(ms, load) {
    let timer = 0, stopped = false;
    const tick = async () => {
      await load();
      if (!stopped) timer = setTimeout(tick, ms);
    };
    tick();
    return () => { stopped = true; clearTimeout(timer); };
  }

  function listPage() {
    const filter = el('input', { type: 'search', id: 'filter', placeholder: 'Filter: name, plugin, phase, state…', oninput: apply });
    filter.value = sessionStorage.getItem('wapper-console-filter') || '';
    const count = el('span', { className: 'muted' });
    const tbody = el('tbody');
    const status = el('p', { className: 'error' });
    view.replaceChildren(
      el('h1', {}, 'Devices'),
      el('div', { className: 'toolbar' }, filter, count),
      el('table', { id: 'devices' },
        el('thead', {}, el('tr', {}, el('th', {}, 'Device'), el('th', {}, 'Phase'), el('th', {}, 'State'),
          el('th', {}, 'Plugin'), el('th', {}, 'Last readings'))),
        tbody),
      status);

    function apply() {
      const q = filter.value.trim().toLowerCase();
      sessionStorage.setItem('wapper-console-filter', filter.value);
      let shown = 0;
      for (const tr of tbody.rows) {
        tr.hidden = q !== '' && !tr.textContent.toLowerCase().includes(q);
        if (!tr.hidden) shown++;
      }
      count.textContent = `${shown} of ${tbody.rows.length}`;
    }
    return every(2000, async () => {
      try {
        const { devices } = await api('api/v1/devices');
        tbody.replaceChildren(...devices.map((d) => {
          const key = `${d.namespace}/${d.name}`;
          const readings = d.twins.filter((t) => t.reported !== undefined).map((t) =>
            el('span', { title: `${t.property} ${t.type}, read ${fmtTime(t.reportedTime)}${t.error ? '\n' + t.error : ''}` },
              t.property, ' ', el('b', { className: t.error ? 'error' : '' }, fmtValue(t.reported, t.type))));
          return el('tr', { 'data-device': key },
            el('td', {}, el('a', { href: `#/device/${enc(d.namespace)}/${enc(d.name)}` }, key)),
            el('td', {}, el('span', { className: 'badge ' + d.phase, title: d.reason || '' }, d.phase)),
            el('td', {}, el('span', { className: 'badge ' + d.state, title: d.stateReason || '' }, d.state)),
            el('td', {}, d.plugin || '–'),
            el('td', { className: 'readings' }, readings.flatMap((r, i) => i ? [' · ', r] : [r])));
        }));
        if (!devices.length) tbody.append(el('tr', {}, el('td', { colspan: 5, className: 'muted' }, 'No devices.')));
        status.textContent = '';
        apply();
      } catch (err) {
        status.textContent = 'Devices not listed: ' + err.message;
      }
    });
  }

  function devicePage(ns, name) {
    const key = `${ns}/${name}`;
    const base = `api/v1/device/${enc(ns)}/${enc(name)}`;
    const ctl = new AbortController();
    const rows = new Map(); // property -> {value, time}
    const charts = new Map(); // property -> Chart
    const facts = el('dl', { className: 'facts' });
    const banner = el('div', { className: 'banner', hidden: true });
    const tbody = el('tbody');
    const chartBox = el('div', { className: 'charts' });
    let limits = { points: 300, ageSeconds: 600 };
    let built = false;
    view.replaceChildren(
      el('h1', {}, el('a', { href: '#/' }, 'Devices'), ' / ', key),
      banner, facts,
      el('table', { id: 'properties' },
        el('thead', {}, el('tr', {}, el('th', {}, 'Property'), el('th', {}, 'Type'), el('th', { className: 'num' }, 'Value'),
          el('th', {}, 'Read at'), el('th', {}, 'Desired'))),
        tbody),
      el('h2', {}, 'Live'),
      chartBox);

    function showFacts(d) {
      const fact = (k, v) => v ? el('div', {}, el('dt', {}, k), el('dd', {}, v)) : null;
      facts.replaceChildren(...[
        fact('Phase', el('span', { className: 'badge ' + d.phase }, d.phase)),
        fact('State', el('span', { className: 'badge ' + d.state }, d.state)),
        fact('Plugin', d.plugin), fact('Model', d.model), fact('Protocol', d.protocol), fact('Source', d.source),
        fact('Reason', d.reason && el('span', { className: 'error' }, d.reason)),
      ].filter(Boolean));
    }

    function build(d, units) {
      for (const t of d.twins) {
        const value = el('td', { className: 'num value' });
        const time = el('td', { className: 'muted time' });
        const desired = el('td', {}, t.accessMode === 'ReadWrite' ? '' : el('span', { className: 'muted' }, 'read-only'));
        const row = { value, time, type: t.type, desiredCell: desired };
        if (t.accessMode === 'ReadWrite') desired.append(desiredForm(t, row));
        rows.set(t.property, row);
        tbody.append(el('tr', { 'data-prop': t.property }, el('td', {}, t.property), el('td', { className: 'muted' }, t.type), value, time, desired));
        showReading(t.property, t.reported, t.reportedTime, t.error);
        if (NUMERIC.has(t.type)) {
          const c = new Chart(t.property, units[t.property], limits);
          charts.set(t.property, c);
          chartBox.append(c.box);
        }
      }
      if (!charts.size) chartBox.append(el('p', { className: 'muted' }, 'No numeric property to plot.'));
    }

    function showReading(prop, value, time, error) {
      const r = rows.get(prop);
      if (!r) return;
      r.value.textContent = fmtValue(value, r.type);
      r.value.title = value || '';
      r.value.classList.toggle('error', !!error);
      r.time.textContent = fmtTime(time);
      r.time.title = error || '';
    }

    function desiredForm(t, row) {
      const input = t.type === 'BOOLEAN'
        ? el('select', { name: 'desired' }, el('option', {}, 'true'), el('option', {}, 'false'))
        : el('input', { name: 'desired', placeholder: t.type.toLowerCase(), autocomplete: 'off', required: true });
      if (t.desired) input.value = t.desired;
      else if (t.type === 'BOOLEAN' && t.reported) input.value = t.reported;
      const outcome = el('span', { className: 'outcome' });
      row.outcome = outcome;
      if (t.desiredSeq > (t.appliedSeq || 0)) setOutcome(outcome, 'pending', `${t.desired} pending`);
      return el('form', {
        className: 'desired',
        onsubmit: async (e) => {
          e.preventDefault();
          const v = input.value.trim();
          setOutcome(outcome, 'pending', 'writing…');
          try {
            const r = await api(`${base}/${enc(t.property)}?wait=10s`, {
              method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ value: v }),
            });
            setOutcome(outcome, 'applied', 'applied', `desired ${r.twin.desired}, seq ${r.twin.appliedSeq}`);
          } catch (err) {
            setOutcome(outcome, err.status === 504 ? 'pending' : 'failed', (err.status === 504 ? 'not applied yet: ' : 'failed: ') + err.message);
          }
        },
      }, input, el('button', { type: 'submit' }, 'Set'), outcome);
    }
    function setOutcome(o, cls, text, title) {
      o.className = 'outcome ' + cls;
      o.textContent = text;
      o.title = title || text;
    }

    async function loadHistory() {
      try {
        const h = await api(`console/api/history/${enc(ns)}/${enc(name)}`);
        limits = { points: h.points, ageSeconds: h.ageSeconds };
        for (const [prop, c] of charts) c.merge(h.properties[prop] || [], limits);
      } catch (err) {
        console.warn('history', err);
      }
    }

    function onEvent(type, ev) {
      if (type === 'reading') {
        showReading(ev.property, ev.value, ev.time, ev.error);
        const c = charts.get(ev.property);
        if (c && !ev.error && ev.time) c.add(Date.parse(ev.time), Number(ev.value));
      } else if (type === 'state') {
        refresh();
      } else if (type === 'removed') {
        banner.textContent = `${key} was removed from the host.`;
        banner.hidden = false;
      }
    }

    async function refresh() {
      try {
        const { device } = await api(base);
        if (!built) {
          let units = {};
          try {
            const m = await api(`api/v1/meta/model/${enc(ns)}/${enc(name)}`);
            for (const p of m.properties || []) units[p.name] = p.unit;
          } catch { /* a device without a model shows no units */ }
          build(device, units);
          built = true;
          stream(`console/api/events?device=${enc(key)}`, ctl.signal, loadHistory, onEvent);
        }
        showFacts(device);
        banner.hidden = true;
      } catch (err) {
        banner.textContent = err.status === 404 ? `No device ${key} on this host.` : 'Device not read: ' + err.message;
        banner.hidden = false;
      }
    }

    // The readings come over the event stream; the device's phase and
    // state, which change rarely, are read again every 5 s.
    const stop = every(5000, refresh);
    return () => { stop(); ctl.abort(); };
  }

  // Chart is a live line plot of one numeric property, in SVG.
  class Chart {
    constructor(prop, unit, limits) {
      this.prop = prop;
      this.limits = limits;
      this.pts = []; // [ms, value], oldest first
      this.W = 480; this.H = 150; this.L = 46; this.B = 18; this.T = 6; this.R = 8;
      this.svg = svg('svg', { viewBox: `0 0 ${this.W} ${this.H}`, 'data-prop': prop, 'data-points': 0, role: 'img', 'aria-label': `${prop} over time` });
      this.grid = svg('path', { class: 'grid' });
      this.line = svg('path', { class: 'line' });
      this.labels = svg('g');
      this.svg.append(this.grid, this.line, this.labels);
      this.now = el('span', { className: 'muted' });
      this.box = el('div', { className: 'chart', 'data-prop': prop },
        el('h3', {}, el('span', {}, prop, unit ? el('span', { className: 'muted' }, ` (${unit})`) : ''), this.now), this.svg);
      this.pending = false;
      this.draw();
    }

    // merge takes the host's history, keeping the live points newer than it.
    merge(points, limits) {
      this.limits = limits;
      const last = points.length ? points[points.length - 1][0] : -Infinity;
      this.pts = points.concat(this.pts.filter((p) => p[0] > last));
      this.trim();
      this.schedule();
    }

    add(t, v) {
      if (!Number.isFinite(t) || !Number.isFinite(v)) return;
      if (this.pts.length && t <= this.pts[this.pts.length - 1][0]) return;
      this.pts.push([t, v]);
      this.trim();
      this.schedule();
    }

    trim() {
      const cutoff = Date.now() - this.limits.ageSeconds * 1000;
      let drop = Math.max(0, this.pts.length - this.limits.points);
      while (drop < this.pts.length && this.pts[drop][0] < cutoff) drop++;
      if (drop) this.pts.splice(0, drop);
    }

    schedule() {
      if (this.pending) return;
      this.pending = true;
      requestAnimationFrame(() => { this.pending = false; this.draw(); });
    }

    draw() {
      const { W, H, L, B, T, R, pts } = this;
      this.svg.setAttribute('data-points', pts.length);
      this.labels.replaceChildren();
      const text = (x, y, s, anchor) => {
        const e = svg('text', { x, y, 'text-anchor': anchor || 'start' });
        e.textContent = s;
        this.labels.append(e);
      };
      this.grid.setAttribute('d', `M${L} ${T}H${W - R}M${L} ${H - B}H${W - R}M${L} ${(T + H - B) / 2}H${W - R}`);
      if (!pts.length) {
        this.line.setAttribute('d', '');
        this.now.textContent = '';
        text(W / 2, H / 2, 'waiting for readings…', 'middle');
        return;
      }
      const t0 = pts[0][0], t1 = Math.max(pts[pts.length - 1][0], t0 + 1000);
      let lo = Math.min(...pts.map((p) => p[1])), hi = Math.max(...pts.map((p) => p[1]));
      if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
      const pad = (hi - lo) * 0.08;
      lo -= pad; hi += pad;
      const x = (t) => L + (t - t0) / (t1 - t0) * (W - L - R);
      const y = (v) => T + (hi - v) / (hi - lo) * (H - B - T);
      this.line.setAttribute('d', pts.map((p, i) => `${i ? 'L' : 'M'}${x(p[0]).toFixed(1)} ${y(p[1]).toFixed(1)}`).join(''));
      const fmt = (v) => String(+v.toPrecision(4));
      text(L - 4, T + 8, fmt(hi), 'end');
      text(L - 4, (T + H - B) / 2 + 4, fmt((hi + lo) / 2), 'end');
      text(L - 4, H - B, fmt(lo), 'end');
      const span = Math.round((t1 - t0) / 1000);
      text(L, H - 4, span >= 120 ? `−${Math.round(span / 60)} min` : `−${span} s`);
      text(W - R, H - 4, new Date(t1).toLocaleTimeString(), 'end');
      this.now.textContent = `${fmt(pts[pts.length - 1][1])} · ${pts.length} points`;
    }
  }

  function pluginsPage() {
    const body = el('div');
    const status = el('p', { className: 'error' });
    view.replaceChildren(el('h1', {}, 'Plugins'), body, status);
    // grants describes a plugin's grants, as `wapper plugin run --grant`
    // takes them, then the settings of its TLS connections, a line each.
    const grants = (p) => [p.grants && p.grants.length ? 'grants: ' + p.grants.join(', ') : null,
      ...(p.tlsGrants || []).map((t) => `TLS to ${t.endpoint}: ` + ([t.serverName && `server name ${t.serverName}`,
        t.caSecret && `CA from ${t.caSecret}`, t.clientSecret && `client certificate from ${t.clientSecret}`]
        .filter(Boolean).join(', ') || 'system CAs'))].filter(Boolean);
    const limits = (l) => `${l.memoryMiB} MiB, ${l.instances} instance${l.instances === 1 ? '' : 's'}, ${l.callTimeout} per call`;
    const counter = (p, k) => p.counters && p.counters[k] != null ? String(Math.round(p.counters[k])) : '–';
    const latency = (p) => p.callMeanSeconds ? `${fmtSeconds(p.callMeanSeconds)} mean, ${fmtSeconds(p.callP99Seconds)} p99` : '–';
    return every(5000, async () => {
      try {
        const [{ plugins }, problems] = await Promise.all([api('console/api/plugins'), api('api/v1/manifests/errors')]);
        const cols = [['instances', 'Instances'], ['restarts', 'Restarts'], ['calls', 'Calls'], ['callErrors', 'Call errors'],
          ['traps', 'Traps'], ['grantDenials', 'Grant denials'], ['readings', 'Readings'], ['readErrors', 'Read errors']];
        const table = el('table', { id: 'plugins' },
          el('thead', {}, el('tr', {}, el('th', {}, 'Plugin'), el('th', {}, 'State'), el('th', {}, 'Module'),
            el('th', { className: 'num' }, 'Devices'), el('th', { className: 'num', title: 'mean and 99th percentile of its calls since the host started' }, 'Call latency'),
            cols.map(([, h]) => el('th', { className: 'num' }, h)))),
          el('tbody', {}, plugins.length ? plugins.map((p) => el('tr', { 'data-plugin': p.name },
            el('td', {}, p.name, el('div', { className: 'muted' }, p.source),
              p.limits ? el('div', { className: 'muted limits' }, limits(p.limits)) : null,
              grants(p).map((g) => el('div', { className: 'muted mono grant' }, g))),
            el('td', {}, el('span', { className: 'badge ' + (p.loaded ? 'loaded' : 'failed') }, p.loaded ? 'loaded' : 'failed'),
              p.error ? el('div', { className: 'error' }, p.error) : null,
              p.rejected ? el('div', { className: 'error' }, `upgrade to ${p.rejectedDigest.slice(0, 19)} rolled back: ${p.rejected}`) : null),
            el('td', { className: 'mono', title: p.digest || '' }, p.digest ? p.digest.slice(0, 19) + '…' : '–'),
            el('td', { className: 'num' }, p.devices),
            el('td', { className: 'num latency' }, latency(p)),
            cols.map(([k]) => el('td', { className: 'num' }, counter(p, k)))))
            : el('tr', {}, el('td', { colspan: 5 + cols.length, className: 'muted' }, 'No MapperPlugins.'))));
        const rowsOf = (list, keys) => list.map((p) => el('tr', {}, keys.map((k) => el('td', { className: k === 'reason' ? 'error' : '' }, p[k] ?? ''))));
        const manifests = problems.manifests || [], devs = problems.devices || [];
        body.replaceChildren(...[table,
          el('h2', {}, 'Problems'),
          !manifests.length && !devs.length ? el('p', { className: 'muted', id: 'no-problems' }, 'None: every manifest loaded and nothing is in error.') : null,
          manifests.length ? el('table', { id: 'manifest-problems' },
            el('thead', {}, el('tr', {}, ['File', 'Doc', 'Kind', 'Name', 'Field', 'Reason'].map((h) => el('th', {}, h)))),
            el('tbody', {}, rowsOf(manifests, ['file', 'doc', 'kind', 'name', 'field', 'reason']))) : null,
          devs.length ? el('table', { id: 'device-problems' },
            el('thead', {}, el('tr', {}, ['Source', 'Kind', 'Name', 'Reason'].map((h) => el('th', {}, h)))),
            el('tbody', {}, rowsOf(devs, ['source', 'kind', 'name', 'reason']))) : null].filter(Boolean));
        status.textContent = '';
      } catch (err) {
        status.textContent = 'Plugins not listed: ' + err.message;
      }
    });
  }

  window.addEventListener('hashchange', route);
  route();
})();
