// The operator panel's page (docs/panel.md). Everything it shows comes from
// the station: /api/config (texts of the configured language, positions),
// the event stream /api/events (status ~4x a second, the last cells), and
// the actions (log in, start, abort, fault reset). The chart library is the
// station's own copy of Debian's libjs-chart.js (/chart.js); without it the
// page works and says that plots are unavailable.
'use strict';
(function () {
  let cfg = null;
  let texts = {};
  let me = null;             // {user, role} when logged in
  let source = null;         // the EventSource
  const cards = {};          // position -> the card's elements
  const plots = {};          // position -> {chart, serial, lastX}
  const kMaxPoints = 3000;

  const $ = (id) => document.getElementById(id);
  function t(key, ...args) {
    let s = Object.prototype.hasOwnProperty.call(texts, key) ? texts[key] : key;
    args.forEach((a, i) => { s = s.split('{' + i + '}').join(String(a)); });
    return s;
  }
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    if (props) for (const [k, v] of Object.entries(props)) {
      if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  }
  function fmt(v, digits) { return (typeof v === 'number' && isFinite(v)) ? v.toFixed(digits) : '–'; }
  function clock(unixS) {
    const d = new Date(unixS * 1000);
    return d.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit', second: '2-digit'});
  }
  let toastTimer = null;
  function toast(text, bad) {
    const e = $('toast');
    e.textContent = text;
    e.className = bad ? 'bad' : '';
    e.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { e.hidden = true; }, 5000);
  }
  async function api(method, path, body) {
    const init = {method: method, credentials: 'same-origin', headers: {}};
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    let j = null;
    try { j = await r.json(); } catch (e) { j = null; }
    return {status: r.status, ok: r.ok, body: j || {}};
  }

  // ---------------------------------------------------------------- login

  function showUser() {
    $('login').hidden = !!me;
    $('who').hidden = !me;
    if (me) $('who-text').textContent = t('logged_in_as', me.user, me.role);
    for (const c of Object.values(cards)) {
      c.abort.disabled = !me;
      c.reset.disabled = !me;
      c.input.placeholder = me ? t('scan_serial') : t('login_required');
    }
  }
  async function login(ev) {
    ev.preventDefault();
    const r = await api('POST', '/api/login', {user: $('login-user').value, password: $('login-password').value});
    $('login-password').value = '';
    if (r.ok) { me = r.body; showUser(); toast(t('logged_in_as', me.user, me.role)); }
    else toast(r.body.error || t('login_failed'), true);
  }
  async function logout() {
    await api('POST', '/api/logout', {});
    me = null;
    showUser();
  }

  // ---------------------------------------------------------------- channels

  async function action(position, what, body) {
    const r = await api('POST', '/api/channels/' + position + '/' + what, body === undefined ? {} : body);
    if (r.status === 401) { me = null; showUser(); }
    if (!r.ok) { toast(r.body.error || String(r.status), true); return null; }
    return r.body;
  }
  function makeCard(position) {
    const c = {};
    c.state = el('span', {class: 'state'});
    c.banner = el('div', {class: 'banner ready', text: t('ready')});
    c.banner.dataset.history = '';
    c.reason = el('div', {class: 'reason'});
    c.serial = el('div', {class: 'serial', text: '–'});
    c.stepName = el('span');
    c.stepTime = el('span');
    c.progress = el('progress', {max: '1', value: '0'});
    c.v = el('span'); c.i = el('span'); c.temp = el('span');
    c.plot = el('div', {class: 'plot'});
    c.input = el('input', {type: 'text', autocomplete: 'off', spellcheck: 'false', maxlength: '64'});
    c.abort = el('button', {type: 'button', text: t('abort')});
    c.reset = el('button', {type: 'button', text: t('reset')});
    c.input.addEventListener('keydown', async (ev) => {
      if (ev.key !== 'Enter') return;
      ev.preventDefault();
      const serial = c.input.value.trim();
      if (!serial) return;
      const r = await action(position, 'start', {serial: serial});
      if (r) {
        c.input.value = '';
        if (r.started) toast(t('started', r.serial || serial, position));
        else toast(t('banner_' + (r.verdict || 'error')) + ': ' + (r.reason || ''), true);
      }
    });
    c.abort.addEventListener('click', async () => {
      if (window.confirm(t('confirm_abort', position))) await action(position, 'abort');
    });
    c.reset.addEventListener('click', async () => {
      const r = await action(position, 'reset');
      if (r) toast(t('reset_ok', position));
    });
    c.root = el('article', {class: 'card', id: 'channel-' + position},
      el('h2', null, el('span', {text: t('channel') + ' ' + position}), c.state),
      c.banner, c.reason, c.serial,
      el('div', {class: 'step'}, c.stepName, c.stepTime), c.progress,
      el('div', {class: 'values'}, c.v, c.i, c.temp),
      c.plot,
      el('div', {class: 'controls'}, c.input, c.abort, c.reset));
    return c;
  }
  function makePlot(position) {
    const c = cards[position];
    if (!window.Chart) {
      c.plot.replaceChildren(el('div', {class: 'noplot', text: t('plots_unavailable')}));
      c.plot.style.height = 'auto';
      return;
    }
    const canvas = el('canvas');
    c.plot.replaceChildren(canvas);
    const axis = (pos, color, grid) => ({position: pos, ticks: {color: color, maxTicksLimit: 4}, grid: {drawOnChartArea: grid}});
    const chart = new window.Chart(canvas, {
      type: 'line',
      data: {datasets: [
        {label: 'V', yAxisID: 'v', data: [], borderColor: '#1565c0', borderWidth: 1.5, pointRadius: 0},
        {label: 'A', yAxisID: 'i', data: [], borderColor: '#2e7d32', borderWidth: 1.5, pointRadius: 0},
        {label: '°C', yAxisID: 't', data: [], borderColor: '#c62828', borderWidth: 1.5, pointRadius: 0},
      ]},
      options: {
        animation: false, parsing: false, normalized: true, responsive: true, maintainAspectRatio: false,
        scales: {x: {type: 'linear', ticks: {maxTicksLimit: 6}, title: {display: true, text: t('elapsed') + ' (s)'}}, v: axis('left', '#1565c0', true),
                 i: axis('left', '#2e7d32', false), t: axis('right', '#c62828', false)},
        plugins: {legend: {labels: {boxWidth: 10}}, tooltip: {enabled: false}},
      },
    });
    plots[position] = {chart: chart, serial: null, lastX: -1};
  }
  function addPoint(ch) {
    const p = plots[ch.position];
    if (!p || ch.state !== 'testing') return;
    if (p.serial !== ch.serial) {  // a new cell: a new plot
      p.serial = ch.serial;
      p.lastX = -1;
      for (const d of p.chart.data.datasets) d.data = [];
    }
    if (!(ch.elapsed_s > p.lastX)) return;
    p.lastX = ch.elapsed_s;
    const ds = p.chart.data.datasets;
    const values = [ch.v_v, ch.i_a, ch.temp_c];
    values.forEach((y, k) => {
      if (typeof y === 'number') {
        ds[k].data.push({x: ch.elapsed_s, y: y});
        if (ds[k].data.length > kMaxPoints) ds[k].data.shift();
      }
    });
    p.chart.update('none');
  }
  function showChannel(ch) {
    const c = cards[ch.position];
    if (!c) return;
    c.state.textContent = ch.state_text;
    let cls = 'ready', text = t('ready'), reason = '';
    if (ch.state === 'testing') {
      cls = 'testing'; text = t('testing');
    } else if (ch.banner) {
      cls = ch.banner.verdict; text = ch.banner.text; reason = ch.banner.reason;
    } else if (ch.state === 'faulted') {
      cls = 'error'; text = t('station_fault');
    }
    // A channel faulted after its last cell (an instrument lost while idle): both reasons.
    if (ch.state === 'faulted' && ch.reason && ch.reason !== reason) reason = reason ? reason + ' — ' + ch.reason : ch.reason;
    if (c.banner.dataset.kind !== cls) {  // the history of banners this page has shown (tests read it)
      c.banner.dataset.kind = cls;
      c.banner.dataset.history = (c.banner.dataset.history + ' ' + cls).trim();
    }
    c.banner.className = 'banner ' + cls;
    c.banner.textContent = text;
    c.reason.textContent = reason;
    const serial = ch.state === 'testing' ? ch.serial : (ch.banner ? ch.banner.serial : ch.serial);
    c.serial.textContent = serial ? t('serial') + ' ' + serial : '–';
    if (ch.state === 'testing') {
      c.stepName.textContent = t('step') + ' ' + (ch.step_index + 1) + '/' + ch.step_count + ' ' + (ch.step || '');
      c.stepTime.textContent = t('elapsed') + ' ' + fmt(ch.elapsed_s, 1) + ' s';
      c.progress.value = ch.progress || 0;
      c.v.textContent = fmt(ch.v_v, 3) + ' V';
      c.i.textContent = fmt(ch.i_a, 3) + ' A';
      c.temp.textContent = fmt(ch.temp_c, 1) + ' °C';
      addPoint(ch);
    } else {
      c.stepName.textContent = '';
      c.stepTime.textContent = ch.banner ? t('time') + ' ' + clock(ch.banner.time_unix_s) : '';
      c.progress.value = ch.banner ? 1 : 0;
      c.v.textContent = ''; c.i.textContent = ''; c.temp.textContent = '';
    }
  }

  // ---------------------------------------------------------------- station

  function showStatus(s) {
    $('station-id').textContent = s.station.id;
    const badge = $('station-state');
    badge.textContent = s.station.state_text;
    badge.className = 'badge ' + s.station.state;
    const alarms = $('alarms');
    alarms.replaceChildren();
    if (!s.alarms.length) alarms.append(el('div', {class: 'ok', text: t('no_alarms')}));
    for (const a of s.alarms) alarms.append(el('div', {class: 'alarm', text: a.text}));
    for (const ch of s.channels) showChannel(ch);
    const k = s.counters;
    const box = (label, value) => el('div', null, el('b', {text: String(value)}), label);
    $('counters').replaceChildren(
      el('h2', {text: t('yield') + ' ' + (k.yield === null ? '–' : (100 * k.yield).toFixed(1) + ' %') +
                      '  ·  ' + t('shift_since', clock(k.since_unix_s))}),
      el('div', {class: 'counts'},
        box(t('count_tested'), k.tested), box(t('count_pass'), k.pass), box(t('count_fail'), k.fail),
        box(t('count_hold'), k.hold), box(t('count_abort'), k.abort), box(t('count_error'), k.error)));
  }
  function showCells(cells) {
    const body = $('recent-table').tBodies[0];
    body.replaceChildren();
    if (!cells.length) body.append(el('tr', null, el('td', {colspan: '4', text: t('no_cells')})));
    for (const f of cells) {
      const link = el('a', {href: '/unit/' + encodeURIComponent(f.serial), text: f.serial, title: t('unit_page')});
      const verdict = el('td', {class: 'v-' + f.verdict, text: f.text});
      if (f.reason) verdict.title = f.reason;
      body.append(el('tr', null, el('td', {text: clock(f.time_unix_s)}), el('td', {text: String(f.position)}),
                      el('td', null, link), verdict));
    }
  }

  // The standing notice: plots unavailable (no chart library), else none.
  function baseNotice() {
    const n = $('notice');
    n.textContent = window.Chart ? '' : t('plots_unavailable');
    n.hidden = !!window.Chart;
  }

  function connect() {
    source = new EventSource('/api/events');
    source.addEventListener('status', (ev) => showStatus(JSON.parse(ev.data)));
    source.addEventListener('cells', (ev) => showCells(JSON.parse(ev.data)));
    source.addEventListener('open', baseNotice);
    source.addEventListener('error', () => {
      $('notice').textContent = t('connection_lost');
      $('notice').hidden = false;
    });
  }

  async function start() {
    const r = await api('GET', '/api/config');
    cfg = r.body;
    texts = cfg.texts || {};
    document.documentElement.lang = cfg.language;
    document.title = cfg.station_id + ' — ' + t('title');
    $('station-id').textContent = cfg.station_id;
    $('login-user').placeholder = t('user');
    $('login-password').placeholder = t('password');
    $('login-button').textContent = t('login');
    $('logout').textContent = t('logout');
    $('recent-title').textContent = t('last_cells');
    $('recent-table').tHead.append(el('tr', null, el('th', {text: t('time')}), el('th', {text: t('channel')}),
                                       el('th', {text: t('serial')}), el('th', {text: t('verdict')})));
    $('login').addEventListener('submit', login);
    $('logout').addEventListener('click', logout);
    for (const p of cfg.positions) {
      cards[p] = makeCard(p);
      $('channels').append(cards[p].root);
    }
    const who = await api('GET', '/api/me');
    me = who.body.user ? who.body : null;
    showUser();
    const afterCharts = () => {
      for (const p of cfg.positions) makePlot(p);
      baseNotice();
      connect();
    };
    if (cfg.charts) {
      const s = el('script', {src: '/chart.js'});
      s.addEventListener('load', afterCharts);
      s.addEventListener('error', afterCharts);
      document.head.append(s);
    } else {
      afterCharts();
    }
    baseNotice();
    setInterval(() => { $('clock').textContent = new Date().toLocaleString(); }, 1000);
  }
  document.addEventListener('DOMContentLoaded', () => { start().catch((e) => toast(String(e), true)); });
})();
