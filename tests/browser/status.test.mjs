/*
 * The /status dashboard in a real browser: Debian's chromium, driven by
 * playwright-core (pinned in package-lock.json; no browser is downloaded).
 * Started by tests/it/test_browser.py, which runs a daemon against the
 * stand-in Gemini server, sends it traffic and passes:
 *
 *   STATUS_URL      the daemon, e.g. http://127.0.0.1:48888
 *   STATUS_TOKEN    its admin_token
 *   STATUS_MODEL    a model to send more traffic on
 *   STATUS_OUT      where the screenshots go
 *   STATUS_SECRETS  a JSON list of full keys that must never be shown
 *   CHROMIUM        the browser (default /usr/bin/chromium)
 *
 * Run with `node --test status.test.mjs`; the tests run in order and share
 * one browser.  The page is compared with the very /api/status_data
 * answer it drew (captured off the wire), and with one fetched here.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.STATUS_URL;
const TOKEN = process.env.STATUS_TOKEN || '';
const MODEL = process.env.STATUS_MODEL || 'gemini-2.5-flash';
const OUT = process.env.STATUS_OUT || 'out';
const SECRETS = JSON.parse(process.env.STATUS_SECRETS || '[]');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
    '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'];
const PAGE = BASE + '/status?token=' + encodeURIComponent(TOKEN);
const DESKTOP = { viewport: { width: 1280, height: 900 } };
const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2,
    isMobile: true, hasTouch: true };

let browser, ctx, page;
const docs = [];		/* each /api/status_data answer the page got */
const requests = [];
const problems = [];		/* page errors and console errors */
let navigations = 0;

const fmt = n => Number(n).toLocaleString('en-US');

async function api() {
	const r = await fetch(BASE + '/api/status_data',
	    { headers: { Authorization: 'Bearer ' + TOKEN } });
	assert.equal(r.status, 200);
	return r.json();
}

/* A page that records what it asks for, what it gets and what goes wrong. */
function watch(p, into) {
	p.on('request', r => requests.push(r.url()));
	p.on('pageerror', e => problems.push('pageerror: ' + e.message));
	p.on('console', m => {
		if (m.type() === 'error')
			problems.push('console: ' + m.text());
	});
	if (into) {
		p.on('response', async r => {
			if (!r.url().includes('/api/status_data') ||
			    r.status() !== 200)
				return;
			try {
				into.push(await r.json());
			} catch (e) {
				problems.push('unreadable answer: ' + e.message);
			}
		});
	}
}

/* Wait for a poll after `after`, then read the page and the doc it drew. */
async function snapshot(p, afterPolls = 0) {
	await p.waitForFunction(n => Number(document.querySelector(
	    '#live').dataset.polls || 0) > n, afterPolls, { timeout: 15000 });
	const s = await p.evaluate(() => {
		const q = (root, sel) => root.querySelector(sel);
		const text = (root, sel) => {
			const e = q(root, sel);
			return e ? e.textContent.trim() : null;
		};
		const out = {
			polls: Number(q(document, '#live').dataset.polls),
			facts: {}, models: {}, keys: {}, chart: {}, legend: {},
			header: [...document.querySelectorAll('#keys thead th')]
			    .map(e => e.textContent),
			board: document.querySelectorAll('#board span').length
		};
		for (const e of document.querySelectorAll('#facts [data-field]'))
			out.facts[e.dataset.field] = e.textContent.trim();
		for (const c of document.querySelectorAll('#models [data-model]')) {
			const ck = q(c, '[data-field="current-key"]');
			out.models[c.dataset.model] = {
				key: ck.dataset.key, shown: ck.textContent.trim(),
				tokens: text(c, '[data-field="tokens-today"]'),
				requests: text(c, '[data-field="requests-today"]'),
				cache: text(c, '[data-field="cache-hit"]'),
				limits: text(c, '[data-field="limits"]')
			};
		}
		for (const tr of document.querySelectorAll('#keys tbody tr')) {
			const k = {
				masked: text(tr, '[data-field="masked"]'),
				tier: text(tr, '[data-field="tier"]'),
				state: q(tr, '[data-field="state"]').dataset.state,
				cls: tr.className,
				bg: getComputedStyle(tr).backgroundColor,
				until: q(tr, 'td.s .cd') ?
				    Number(q(tr, 'td.s .cd').dataset.until) : null,
				cells: {}
			};
			for (const td of tr.querySelectorAll('td[data-model]')) {
				const c = { state: td.dataset.state,
				    bg: getComputedStyle(td).backgroundColor,
				    badge: q(td, '[data-field="cell-state"]') ?
				    q(td, '[data-field="cell-state"]').className :
				    null,
				    until: q(td, '.cd') ?
				    Number(q(td, '.cd').dataset.until) : null,
				    requests: text(td,
				    '[data-field="requests-today"]'),
				    tokens: text(td, '[data-field="tokens-today"]'),
				    metrics: {} };
				for (const u of td.querySelectorAll('[data-metric]'))
					c.metrics[u.dataset.metric] = {
						used: u.dataset.used,
						limit: u.dataset.limit,
						shown: text(u, '[data-field="used"]'),
						width: parseFloat(q(u, '.bar > i')
						    .style.width) || 0
					};
				k.cells[td.dataset.model] = c;
			}
			out.keys[tr.dataset.key] = k;
		}
		for (const l of document.querySelectorAll('#chart polyline')) {
			out.chart[l.dataset.model] = {
				values: l.dataset.values,
				ys: l.getAttribute('points').trim().split(/\s+/)
				    .map(p => Number(p.split(',')[1]))
			};
		}
		for (const li of document.querySelectorAll('#legend li'))
			out.legend[li.dataset.model] =
			    text(li, '[data-field="hour-total"]');
		return out;
	});
	/* The answer is read off the wire a moment after the page has it. */
	for (let i = 0; i < 100 && docs.length < s.polls; i++)
		await new Promise(r => setTimeout(r, 20));
	assert.ok(docs.length >= s.polls, 'a drawn document was not captured');
	return { s, d: docs[s.polls - 1] };
}

before(async () => {
	assert.ok(BASE, 'STATUS_URL is not set');
	assert.ok(fs.existsSync(CHROMIUM), CHROMIUM + ' is missing');
	fs.mkdirSync(OUT, { recursive: true });
	/* launch() starts chromium with a fresh --user-data-dir of its own
	 * (a temporary profile, removed at close). */
	browser = await chromium.launch({ executablePath: CHROMIUM,
	    args: ARGS, timeout: 60000 });
	ctx = await browser.newContext({ ...DESKTOP, colorScheme: 'light' });
	page = await ctx.newPage();
	watch(page, docs);
	page.on('framenavigated', f => {
		if (f === page.mainFrame())
			navigations++;
	});
	const r = await page.goto(PAGE);
	assert.equal(r.status(), 200);
});

after(async () => {
	if (browser)
		await browser.close();
});

test('the page polls /api/status_data with its token, nothing else',
    async () => {
	const { s } = await snapshot(page);
	assert.ok(s.polls >= 1);
	const origin = new URL(BASE).origin;
	for (const u of requests) {
		if (u.startsWith('data:'))
			continue;
		assert.equal(new URL(u).origin, origin, 'request elsewhere: ' + u);
		if (new URL(u).pathname.startsWith('/api/'))
			assert.equal(new URL(u).searchParams.get('token'), TOKEN,
			    'API call without the token: ' + u);
	}
	assert.ok(requests.some(u => u.includes('/api/status_data')));
	assert.deepEqual(problems, []);
});

test('the daemon facts are those of /api/status_data', async () => {
	const { s, d } = await snapshot(page);
	const fresh = await api();
	assert.equal(s.facts.version, d.version);
	assert.equal(s.facts.version, fresh.version);
	assert.equal(s.facts.generation, String(fresh.config_generation));
	assert.ok(s.facts['next-reset'].startsWith(fresh.next_quota_reset),
	    s.facts['next-reset']);
	assert.match(s.facts['next-reset-in'], /^in \d/);
	assert.equal(s.facts['last-reload'], fresh.last_reload.time ?
	    s.facts['last-reload'] : 'none since start');
	assert.equal(s.facts['workers-busy'], String(d.workers_busy));
	assert.equal(s.facts['workers-idle'], String(d.workers_idle));
	assert.equal(s.board, d.workers.length);
	assert.equal(s.facts['tokens-today'], fmt(fresh.tokens_today.total));
	assert.equal(s.facts['requests-today'], fmt(fresh.requests_today));
	assert.match(s.facts.uptime, /^\d+:\d\d$|^\d+h|^\d+d/);
});

test('each model shows the key it is on, its limits and its day',
    async () => {
	const { s, d } = await snapshot(page);
	const fresh = await api();
	assert.deepEqual(Object.keys(s.models), Object.keys(d.models));
	for (const [m, lim] of Object.entries(fresh.models)) {
		const card = s.models[m];
		const cur = fresh.current_keys[m];
		assert.equal(card.key, cur || '', m);
		if (cur) {
			const k = fresh.keys.find(x => x.id === cur);
			assert.equal(card.shown, k.masked, m);
		} else
			assert.equal(card.shown, (lim.keys || {}).available > 0 ?
			    'none yet' : 'none can serve', m);
		assert.equal(card.tokens, fmt(lim.tokens_today.total), m);
		assert.equal(card.requests, fmt(lim.requests_today), m);
		assert.equal(card.cache,
		    Math.round(lim.cache_hit_ratio * 1000) / 10 + '%', m);
		assert.match(card.limits, /^limits: TPM /);
	}
	assert.ok(Object.values(fresh.current_keys).includes(null),
	    'the traffic should have left a model no key can serve');
});

test('the keys table shows every key x model against its limits',
    async () => {
	const { s, d } = await snapshot(page);
	const fresh = await api();
	const models = Object.keys(d.models);
	assert.deepEqual(s.header, ['key', 'tier', 'state', ...models]);
	assert.deepEqual(Object.keys(s.keys), d.keys.map(k => k.id));
	const bg = {}, cbg = {};
	let cooling = 0, exhausted = 0;
	for (const k of d.keys) {
		const row = s.keys[k.id];
		const f = fresh.keys.find(x => x.id === k.id);
		assert.equal(row.masked, k.masked);
		assert.equal(row.tier, k.tier);
		assert.equal(row.state, k.state);
		assert.ok(row.cls.split(' ').includes('s-' + k.state), row.cls);
		bg[k.state] = row.bg;
		assert.equal(row.until, k.until ? Date.parse(k.until) : null);
		for (const m of models) {
			const c = k.models[m], cell = row.cells[m];
			assert.equal(cell.state, c.state, k.id + ' ' + m);
			if (c.state !== 'available')
				assert.match(cell.badge, new RegExp('b-' + c.state));
			assert.equal(cell.until, c.until ? Date.parse(c.until) :
			    null, k.id + ' ' + m);
			if (k.state !== 'invalid')
				cbg[c.state] = cell.bg;
			cooling += c.state === 'cooling';
			exhausted += c.state === 'exhausted';
			for (const x of ['tpm', 'tpd', 'rpm', 'rpd']) {
				const u = cell.metrics[x];
				const used = c[x + '_used'];
				const lim = c[x + '_limit'];
				assert.equal(u.used, String(used), x);
				assert.equal(u.limit, lim === null ? '' :
				    String(lim), x);
				assert.equal(u.shown, fmt(used), x);
				const want = lim === null ? 0 :
				    Math.min(100, lim > 0 ? used / lim * 100 : 100);
				assert.ok(Math.abs(u.width - want) < 0.06,
				    `${x} bar ${u.width}% for ${used}/${lim}`);
			}
			/* Counters that only traffic moves: as fetched now. */
			const fc = f.models[m];
			assert.equal(cell.requests, fmt(fc.requests_today));
			assert.equal(cell.tokens, fmt(fc.tokens_today.total));
		}
	}
	assert.ok(cooling > 0 && exhausted > 0,
	    'the traffic should have left cooling and exhausted keys');
	/* Cells that cannot serve stand out from those that can, and
	 * from each other; so do invalid keys' rows. */
	assert.ok(cbg.available && cbg.cooling && cbg.exhausted);
	assert.equal(new Set([cbg.available, cbg.cooling, cbg.exhausted]).size,
	    3, JSON.stringify(cbg));
	if (bg.invalid && bg.available)
		assert.notEqual(bg.invalid, bg.available);
});

test('the chart shows the tokens per minute of the last hour per model',
    async () => {
	const { s, d } = await snapshot(page);
	for (const [m, hist] of Object.entries(d.history_by_model)) {
		const line = s.chart[m];
		assert.ok(line, 'no line for ' + m);
		assert.equal(line.values, hist.join(','), m);
		assert.equal(line.ys.length, 60, m);
		/* Higher is more: the order of the points follows the values. */
		for (let i = 0; i < 60; i++)
			for (let j = 0; j < 60; j++)
				if (hist[i] > hist[j])
					assert.ok(line.ys[i] < line.ys[j],
					    `${m}: minute ${i} above ${j}`);
		assert.equal(s.legend[m], fmt(hist.reduce((a, v) => a + v, 0)));
	}
	const total = Object.values(d.history_by_model)
	    .reduce((a, h) => a + h.reduce((x, v) => x + v, 0), 0);
	assert.ok(total > 0, 'no tokens in the hour');
});

test('countdowns move every second', async () => {
	const first = await page.evaluate(() => {
		const e = [...document.querySelectorAll('#keys .cd')].find(x =>
		    Number(x.dataset.until) - Date.now() > 4000 &&
		    /^for /.test(x.textContent));
		return e ? e.textContent : null;
	});
	assert.ok(first, 'no cooling countdown on the page');
	await page.waitForFunction(t => ![...document.querySelectorAll(
	    '#keys .cd')].some(x => x.textContent === t), first,
	    { timeout: 5000 });
});

test('more traffic shows up without a reload', async () => {
	await page.evaluate(() => { window.__same_page = 'yes'; });
	const navs = navigations;
	const before = await api();
	const cur = before.current_keys[MODEL];
	assert.ok(cur, 'no key in use for ' + MODEL);
	const c0 = before.keys.find(k => k.id === cur).models[MODEL];
	const n = 3;
	for (let i = 0; i < n; i++) {
		const r = await fetch(BASE + '/v1beta/models/' + MODEL +
		    ':generateContent', { method: 'POST',
		    headers: { 'Content-Type': 'application/json' },
		    body: JSON.stringify({ contents: [{ role: 'user', parts: [
		    { text: 'more traffic from the browser test ' + i +
		    ' STANDIN:candidates=20' }] }] }) });
		assert.equal(r.status, 200, await r.text());
	}
	const want = fmt(c0.requests_today + n);
	await page.waitForFunction(([id, m, w]) => {
		const e = document.querySelector('#keys tr[data-key="' + id +
		    '"] td[data-model="' + m + '"] [data-field="requests-today"]');
		return e && e.textContent === w;
	}, [cur, MODEL, want], { timeout: 15000 });
	const { s, d } = await snapshot(page);
	const c1 = d.keys.find(k => k.id === cur).models[MODEL];
	assert.equal(c1.requests_today, c0.requests_today + n);
	assert.ok(c1.tokens_today.total > c0.tokens_today.total);
	assert.equal(s.keys[cur].cells[MODEL].tokens,
	    fmt(c1.tokens_today.total));
	assert.equal(s.legend[MODEL], fmt(d.history_by_model[MODEL]
	    .reduce((a, v) => a + v, 0)));
	assert.equal(s.chart[MODEL].values, d.history_by_model[MODEL].join(','));
	assert.equal(s.models[MODEL].requests,
	    fmt(d.models[MODEL].requests_today));
	assert.equal(await page.evaluate(() => window.__same_page), 'yes');
	assert.equal(navigations, navs, 'the page was reloaded');
	assert.deepEqual(problems, []);
});

test('an API failure is shown, and cleared by the next good poll',
    async () => {
	await page.route('**/api/status_data*', r => r.fulfill({ status: 503,
	    contentType: 'application/json', body: '{}' }));
	await page.waitForSelector('#err.show', { timeout: 10000 });
	assert.match(await page.textContent('#err'), /503/);
	await page.unroute('**/api/status_data*');
	await page.waitForFunction(() => !document.querySelector('#err')
	    .classList.contains('show'), null, { timeout: 10000 });
	/* The browser logged the 503s it was made to see. */
	for (let i = problems.length - 1; i >= 0; i--)
		if (/status of 503/.test(problems[i]))
			problems.splice(i, 1);
});

test('no full key anywhere on the page', async () => {
	const html = await page.content();
	const shown = await page.evaluate(() => document.body.innerText);
	assert.ok(SECRETS.length > 0);
	for (const k of SECRETS) {
		assert.ok(!html.includes(k), 'a full key in the page source');
		assert.ok(!shown.includes(k), 'a full key on the page');
	}
});

/* Light and dark, desktop and phone: screenshots and what they must show. */
for (const [name, opts, scheme] of [
    ['desktop-light', DESKTOP, 'light'], ['desktop-dark', DESKTOP, 'dark'],
    ['phone-light', PHONE, 'light'], ['phone-dark', PHONE, 'dark']]) {
	test('screenshot ' + name, async () => {
		const c = await browser.newContext({ ...opts,
		    colorScheme: scheme });
		const p = await c.newPage();
		const got = [];
		watch(p, got);
		await p.goto(PAGE);
		await p.waitForFunction(() => Number(document.querySelector(
		    '#live').dataset.polls || 0) >= 1, null, { timeout: 15000 });
		const look = await p.evaluate(() => {
			const rgb = s => s.match(/\d+(\.\d+)?/g).slice(0, 3)
			    .map(Number);
			const lum = ([r, g, b]) => (0.2126 * r + 0.7152 * g +
			    0.0722 * b) / 255;
			const head = document.querySelector('#keys thead');
			return {
				bg: lum(rgb(getComputedStyle(document.body)
				    .backgroundColor)),
				fg: lum(rgb(getComputedStyle(document.body).color)),
				overflow: document.documentElement.scrollWidth -
				    window.innerWidth,
				thead: getComputedStyle(head).display,
				rows: document.querySelectorAll('#keys tbody tr')
				    .length,
				chartWidth: document.querySelector('#chart')
				    .getBoundingClientRect().width
			};
		});
		if (scheme === 'dark')
			assert.ok(look.bg < 0.2 && look.fg > 0.7, JSON.stringify(look));
		else
			assert.ok(look.bg > 0.8 && look.fg < 0.3, JSON.stringify(look));
		assert.ok(look.overflow <= 1, 'sideways scrolling: ' +
		    look.overflow + 'px');
		assert.ok(look.rows > 0);
		if (opts === PHONE) {
			assert.equal(look.thead, 'none', 'phone: keys as cards');
			assert.ok(look.chartWidth <= 390 && look.chartWidth > 300);
		} else
			assert.notEqual(look.thead, 'none');
		const file = path.join(OUT, 'status-' + name + '.png');
		await p.screenshot({ path: file, fullPage: true });
		assert.ok(fs.statSync(file).size > 10000);
		await c.close();
		assert.deepEqual(problems, []);
	});
}
