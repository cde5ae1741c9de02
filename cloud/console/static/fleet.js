// wapper-cloud's fleet console: nodes with their link and sync state, a
// page per node with its devices and plugins, every device, and the
// plugins with their rollouts. One request (GET console/api/fleet) every
// few seconds feeds every page. Plain DOM, no framework; every text from
// the cloud goes in as text, never as HTML.
'use strict';
(() => {
  const REFRESH_MS = 3000;
  const view = document.getElementById('view');
  const live = document.getElementById('live');
  let fleet = null;
  let failure = '';

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k === 'className' ? 'class' : k, v === true ? '' : v);
    }
    for (const k of kids.flat()) if (k != null && k !== false) e.append(k instanceof Node ? k : String(k));
    return e;
  }
  const badge = (text) => el('span', { className: 'badge ' + text }, text);
  const short = (d) => (d ? d.replace(/^sha256:/, '').slice(0, 12) : '–');
  function ago(t) {
    if (!t) return '';
    const s = Math.max(0, (Date.now() - new Date(t)) / 1000);
    if (s < 90) return Math.round(s) + ' s ago';
    if (s < 5400) return Math.round(s / 60) + ' min ago';
    return Math.round(s / 3600) + ' h ago';
  }
  function moduleText(m) {
    return (m.image || m.file || '') + (m.digest ? ' @' + short(m.digest) : '');
  }

  // ---- the token (token.js)

  wapperToken.init('wapper-fleet-token', () => { fleet = null; refresh(); });

  // ---- the fleet, fetched again every few seconds

  let timer = 0;
  async function refresh() {
    clearTimeout(timer);
    try {
      const res = await fetch('console/api/fleet', { headers: wapperToken.headers(), cache: 'no-store' });
      let body = null;
      try { body = await res.json(); } catch { /* not JSON */ }
      if (!res.ok) {
        const msg = (body && body.error) || `${res.status} ${res.statusText}`;
        if (res.status === 401 || res.status === 403) {
          fleet = null;
          failure = msg;
          wapperToken.ask(msg);
          render();
          return; // wait for a token
        }
        throw new Error(msg);
      }
      fleet = body;
      failure = '';
      live.textContent = 'updated ' + new Date(body.time).toLocaleTimeString();
      live.className = 'live on';
    } catch (e) {
      failure = 'wapper-cloud did not answer: ' + e.message;
      live.textContent = 'reconnecting';
      live.className = 'live';
    }
    render();
    timer = setTimeout(refresh, REFRESH_MS);
  }

  // ---- pages

  const filters = { nodes: '', devices: '' };
  function filterBox(key, placeholder) {
    return el('input', {
      type: 'search', id: 'filter', placeholder, value: filters[key],
      oninput: (e) => { filters[key] = e.target.value; applyFilter(key); },
    });
  }
  function applyFilter(key) {
    const q = filters[key].trim().toLowerCase();
    for (const tr of view.querySelectorAll('tr[data-filter]')) tr.hidden = q !== '' && !tr.dataset.filter.includes(q);
  }

  function syncCell(n) {
    if (n.link !== 'connected') return el('td', { className: 'sync muted' }, '–');
    if (n.inSync) return el('td', { className: 'sync' }, badge('in-sync'));
    return el('td', { className: 'sync' }, badge('syncing'),
      ` ${n.outstanding} to send, lag ${n.syncLagSeconds.toFixed(1)} s`);
  }
  function linkCell(n) {
    const when = n.link === 'connected' ? 'since ' + ago(n.since) : n.link === 'disconnected' ? ago(n.since) : '';
    return el('td', { className: 'link' }, badge(n.link), ' ', el('span', { className: 'muted' }, when));
  }
  function pluginList(ps) {
    return ps.map((p) => el('div', {}, p.name, ' ', badge(p.phase.toLowerCase()), ' ',
      el('span', { className: 'mono muted' }, short(p.digest))));
  }

  function nodesPage() {
    const rows = fleet.nodes.map((n) => el('tr', { 'data-node': n.name, 'data-filter': n.name.toLowerCase() },
      el('td', {}, el('a', { href: '#/node/' + encodeURIComponent(n.name) }, n.name)),
      linkCell(n),
      el('td', { className: 'seen muted' }, ago(n.lastSeen)),
      syncCell(n),
      el('td', { className: 'devices num' }, `${n.online} / ${n.devices}`),
      el('td', { className: 'plugins' }, pluginList(n.plugins))));
    const connected = fleet.nodes.filter((n) => n.link === 'connected').length;
    return [
      el('h1', {}, 'Nodes'),
      el('div', { className: 'toolbar' }, filterBox('nodes', 'Filter nodes'),
        el('span', { className: 'muted' }, `${connected} of ${fleet.nodes.length} connected to this wapper-cloud`)),
      el('table', { id: 'nodes' }, el('thead', {}, el('tr', {}, el('th', {}, 'Node'), el('th', {}, 'Link'),
        el('th', {}, 'Last heard'), el('th', {}, 'Sync'), el('th', { className: 'num' }, 'Online / devices'),
        el('th', {}, 'Plugins'))), el('tbody', {}, rows)),
    ];
  }

  function readings(d) {
    return d.twins.filter((t) => t.reported && t.reported.value !== undefined).map((t) =>
      el('span', {}, t.propertyName + ' ', el('b', {}, t.reported.value), '  '));
  }
  function devicesTable(devs, withNode) {
    const rows = devs.map((d) => {
      const key = d.namespace + '/' + d.name;
      return el('tr', { 'data-device': key, 'data-filter': (key + ' ' + d.node + ' ' + (d.plugin || '')).toLowerCase() },
        el('td', {}, key),
        withNode && el('td', {}, el('a', { href: '#/node/' + encodeURIComponent(d.node) }, d.node)),
        el('td', { className: 'state' }, d.state ? badge(d.state) : el('span', { className: 'muted' }, 'no report')),
        el('td', {}, d.plugin || el('span', { className: 'error' }, d.problem || 'no plugin')),
        el('td', { className: 'readings' }, readings(d)),
        el('td', { className: 'muted' }, ago(d.lastOnlineTime)));
    });
    return el('table', { id: 'devices' }, el('thead', {}, el('tr', {}, el('th', {}, 'Device'), withNode && el('th', {}, 'Node'),
      el('th', {}, 'State'), el('th', {}, 'Plugin'), el('th', {}, 'Last readings'), el('th', {}, 'Last online'))),
    el('tbody', {}, rows));
  }

  function nodePage(name) {
    const n = fleet.nodes.find((x) => x.name === name);
    if (!n) return [el('h1', {}, name), el('p', { className: 'muted' }, 'No such node in the fleet.')];
    const fact = (k, v) => el('div', {}, el('dt', {}, k), el('dd', {}, v));
    return [
      el('h1', {}, 'Node ', name),
      el('dl', { className: 'facts', id: 'node-facts' },
        fact('Link', badge(n.link)), fact('Since', n.since ? new Date(n.since).toLocaleString() : '–'),
        fact('Remote', n.remote || '–'), fact('Last heard', ago(n.lastSeen) || '–'),
        fact('Desired objects', String(n.desired)), fact('In flight', String(n.inFlight)),
        fact('Sync', n.inSync ? 'in sync' : n.link === 'connected' ? `${n.outstanding} to send, lag ${n.syncLagSeconds.toFixed(1)} s` : '–')),
      el('h2', {}, 'Plugins'),
      el('table', { id: 'node-plugins' }, el('thead', {}, el('tr', {}, el('th', {}, 'Plugin'), el('th', {}, 'Phase'),
        el('th', {}, 'Digest'), el('th', {}, 'Message'))),
      el('tbody', {}, n.plugins.map((p) => el('tr', { 'data-plugin': p.name }, el('td', {}, p.name),
        el('td', {}, badge(p.phase.toLowerCase())), el('td', { className: 'mono' }, short(p.digest)),
        el('td', {}, p.message || '', p.rejectedDigest ? ` (rejected ${short(p.rejectedDigest)})` : ''))))),
      el('h2', {}, 'Devices'),
      devicesTable(fleet.devices.filter((d) => d.node === name), false),
    ];
  }

  function devicesPage() {
    return [
      el('h1', {}, 'Devices'),
      el('div', { className: 'toolbar' }, filterBox('devices', 'Filter devices, nodes, plugins')),
      devicesTable(fleet.devices, true),
    ];
  }

  function pluginsPage() {
    const rows = fleet.plugins.map((p) => {
      const r = p.rollout || {};
      const failed = (r.failedNodes || []).map((f) => el('div', { className: 'error' }, f.node + ': ' + (f.reason || 'failed')));
      return el('tr', { 'data-plugin': p.name },
        el('td', {}, p.name, el('div', { className: 'muted' }, (p.protocols || []).join(', '))),
        el('td', { className: 'mono' }, moduleText(p.module)),
        el('td', {}, p.strategy || 'Hot'),
        el('td', { className: 'rollout' }, r.phase ? badge(r.phase) : el('span', { className: 'muted' }, 'none'),
          r.phase ? ` ${r.updatedNodes || 0} / ${r.totalNodes || 0} nodes, wave ${r.currentWave || 0}` : '',
          r.message ? el('div', { className: 'muted' }, r.message) : null, failed),
        el('td', { className: 'num' }, String(p.devices)),
        el('td', {}, (p.nodes || []).map((n) => el('div', {}, n.node + ' ', badge(n.phase.toLowerCase()), ' ',
          el('span', { className: 'mono muted' }, short(n.digest))))));
    });
    return [
      el('h1', {}, 'Plugins'),
      el('table', { id: 'plugins' }, el('thead', {}, el('tr', {}, el('th', {}, 'Plugin'), el('th', {}, 'Module'),
        el('th', {}, 'Upgrade'), el('th', {}, 'Rollout'), el('th', { className: 'num' }, 'Devices'), el('th', {}, 'Nodes'))),
      el('tbody', {}, rows)),
    ];
  }

  // ---- routing: #/ nodes, #/node/NAME, #/devices, #/plugins

  function render() {
    const hash = location.hash.replace(/^#/, '') || '/';
    const parts = hash.split('/').filter(Boolean).map(decodeURIComponent);
    const page = parts[0] || 'nodes';
    for (const a of document.querySelectorAll('nav a')) a.classList.toggle('current', a.dataset.nav === (page === 'node' ? 'nodes' : page));
    const kids = [];
    if (failure) kids.push(el('div', { className: 'banner', id: 'failure' }, failure));
    if (fleet) {
      if (page === 'node') kids.push(...nodePage(parts[1] || ''));
      else if (page === 'devices') kids.push(...devicesPage());
      else if (page === 'plugins') kids.push(...pluginsPage());
      else kids.push(...nodesPage());
    } else if (!failure) kids.push(el('p', { className: 'muted' }, 'Loading…'));
    // Keep the filter box's focus and caret across a refresh.
    const focused = document.activeElement && document.activeElement.id === 'filter';
    const caret = focused ? document.activeElement.selectionStart : 0;
    view.replaceChildren(...kids);
    applyFilter(page === 'devices' ? 'devices' : 'nodes');
    if (focused) {
      const f = document.getElementById('filter');
      if (f) { f.focus(); f.setSelectionRange(caret, caret); }
    }
  }
  window.addEventListener('hashchange', render);
  refresh();
})();
