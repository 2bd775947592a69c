// The public recall lookup page (docs/genealogy.md, "The recall lookup
// page"). The serial scheme (length, alphabet, check rule, ignored
// characters, aliases, confusable pairs) and every text come from
// /api/recall/config: nothing about the scheme is written here. As typed,
// each character becomes a symbol of the alphabet (an alias such as O → 0,
// I → 1, lower → upper case), is dropped (spaces, dashes), or is refused
// and not entered; a complete serial whose check character fails offers the
// confusable corrections; the answer is /api/recall's, shown as text.
'use strict';
(function () {
  let scheme = null;
  let texts = {};
  const $ = (id) => document.getElementById(id);
  const has = (o, k) => Object.prototype.hasOwnProperty.call(o, k);
  function t(key, ...args) {
    let s = has(texts, key) ? texts[key] : key;
    args.forEach((a, i) => { s = s.split('{' + i + '}').join(String(a)); });
    return s;
  }

  // A typed character: its symbol, '' when it is ignored, null when refused.
  function symbolOf(ch) {
    if (ch.length === 1 && scheme.alphabet.includes(ch)) return ch;
    if (has(scheme.aliases, ch)) return scheme.aliases[ch];
    if (ch.length === 1 && scheme.ignore.includes(ch)) return '';
    return null;
  }
  function clean(raw) {
    let value = '';
    const refused = [];
    for (const ch of raw) {  // code points
      const s = symbolOf(ch);
      if (s === null) refused.push(ch);
      else if (s && value.length < scheme.length) value += s;
    }
    return {value, refused};
  }
  // The scheme's check rule by name ("luhn": Luhn mod N over the alphabet).
  function checkOk(s) {
    if (scheme.check !== 'luhn') return true;
    const n = scheme.alphabet.length;
    let factor = 1, sum = 0;
    for (let i = s.length - 1; i >= 0; --i) {
      const addend = factor * scheme.alphabet.indexOf(s[i]);
      factor = 3 - factor;
      sum += Math.floor(addend / n) + (addend % n);
    }
    return sum % n === 0;
  }
  function corrections(s) {
    const out = [];
    for (let i = 0; i < s.length; ++i)
      for (const [a, b] of scheme.confusable) {
        const other = s[i] === a ? b : s[i] === b ? a : null;
        if (other === null) continue;
        const trial = s.slice(0, i) + other + s.slice(i + 1);
        if (checkOk(trial) && !out.includes(trial)) out.push(trial);
      }
    return out;
  }

  function show(el, on) { el.hidden = !on; }
  function update(refused) {
    const input = $('serial');
    const v = input.value;
    $('counter').textContent = t('counter', v.length, scheme.length);
    const complete = v.length === scheme.length;
    const valid = complete && checkOk(v);
    input.classList.toggle('complete', valid);
    input.classList.toggle('invalid', complete && !valid);
    $('check').disabled = !valid;
    if (refused && refused.length) {
      $('refused').textContent = t('refused_character', refused.join(' '));
      show($('refused'), true);
    } else if (refused !== undefined) {
      show($('refused'), false);
    }
    const list = $('fix-list');
    list.replaceChildren();
    if (complete && !valid) {
      const fixes = corrections(v);
      $('fix-text').textContent = fixes.length ? t('check_failed') + ' ' + t('suggestions') : t('check_failed') + ' ' + t('no_suggestion');
      for (const f of fixes) {
        const b = document.createElement('button');
        b.type = 'button';
        b.textContent = f;
        b.addEventListener('click', () => { input.value = f; update([]); input.focus(); });
        list.append(b);
      }
      show($('fix'), true);
    } else {
      show($('fix'), false);
    }
    if (!complete || !valid) show($('answer'), false);
  }

  function onInput() {
    const input = $('serial');
    const raw = input.value;
    const caret = input.selectionStart === null ? raw.length : input.selectionStart;
    const all = clean(raw);
    const before = clean(raw.slice(0, caret)).value.length;
    if (all.value !== raw) {
      input.value = all.value;
      const at = Math.min(before, all.value.length);
      input.setSelectionRange(at, at);
    }
    update(all.refused);
  }

  async function lookup(ev) {
    ev.preventDefault();
    const v = $('serial').value;
    if (v.length !== scheme.length || !checkOk(v)) return;
    show($('problem'), false);
    $('check').disabled = true;
    try {
      const r = await fetch('/api/recall?serial=' + encodeURIComponent(v), {cache: 'no-store'});
      const j = await r.json();
      if (r.status === 200) {
        const a = $('answer');
        a.dataset.status = j.status;
        a.dataset.keys = Object.keys(j).sort().join(' ');
        a.dataset.serial = j.serial;
        $('headline').textContent = j.headline;
        $('action').textContent = j.action;
        $('disposal').textContent = j.disposal;
        $('contact').textContent = j.contact;
        show(a, true);
      } else if (r.status === 429) {
        $('problem').textContent = t('rate_limited', j.retry_after_s);
        show($('problem'), true);
      } else {
        $('problem').textContent = j.error || t('unavailable');
        show($('problem'), true);
      }
    } catch (e) {
      $('problem').textContent = t('unavailable');
      show($('problem'), true);
    } finally {
      $('check').disabled = !(v.length === scheme.length && checkOk(v));
    }
  }

  async function start() {
    try {
      const r = await fetch('/api/recall/config', {cache: 'no-store'});
      const cfg = await r.json();
      scheme = cfg.scheme;
      texts = cfg.texts;
    } catch (e) {
      $('problem').textContent = 'The lookup is not available right now.';
      show($('problem'), true);
      return;
    }
    document.documentElement.lang = t('language');
    document.title = t('title');
    $('title').textContent = t('title');
    $('intro').textContent = t('intro');
    $('serial-label').textContent = t('serial_label');
    $('check').textContent = t('check_button');
    const input = $('serial');
    input.maxLength = scheme.length * 4;  // room for spaces and dashes while typing; the value is cleaned
    input.addEventListener('input', onInput);
    // Enter looks up (a scanner or a person), whether or not the browser submits the form on it.
    input.addEventListener('keydown', (e) => { if (e.key === 'Enter') lookup(e); });
    $('lookup').addEventListener('submit', lookup);
    input.disabled = false;
    update();
    input.focus();
    document.body.dataset.ready = 'true';
  }
  start();
})();
