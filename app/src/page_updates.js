// Page updates for the server-rendered dashboard: moving between pages
// without reloading the document, and live refreshes when the server's change
// feed says something people see has moved. Both fetch the page's HTML and
// morph the page's `.frame` into the fetched one, in place; islands (the
// parts hydrated by WASM) whose component and props are unchanged are kept
// as they are, so their state survives. Without this script every link and
// form still works as plain HTML.
(() => {
  const ISLAND = 'leptos-island';
  let navigating = 0;
  let refreshing = false;
  let refreshAgain = false;
  // The change feed's newest version, and the version the page shows: a
  // page fetched after the feed announced a version shows at least that.
  let announced = null;
  // The server stamps each page with the version it was rendered at.
  const stampOf = (root) => root.querySelector('[data-page-version]')?.dataset.pageVersion || null;
  let showing = stampOf(document);

  // An island is the same if its component and props are; one that keeps
  // itself current (the run's live logs) names a key of its own instead.
  const keyOf = (el) => {
    const own = el.firstElementChild && el.firstElementChild.dataset.islandKey;
    return `${el.dataset.component}|${own || el.dataset.props || ''}`;
  };
  const islandsReady = () => document.documentElement.dataset.islands === 'ready';

  // The page (path and query) the document shows; a change of the hash
  // alone is not a new page.
  let shown = location.pathname + location.search;

  // Fetches `url` and morphs the frame into its page. `mode` is 'navigate'
  // (a new page: only the layout's islands are kept), 'back' (the same,
  // without a new history entry) or 'refresh' (the same page: every
  // unchanged island and every `[data-keep]` region is kept, and so is the
  // scroll position).
  async function swap(url, mode) {
    const ticket = mode === 'refresh' ? navigating : ++navigating;
    const version = announced;
    let response;
    try {
      response = await fetch(url, { headers: { Accept: 'text/html' }, credentials: 'same-origin' });
    } catch (error) {
      if (mode !== 'refresh') location.assign(url);
      return false;
    }
    const type = response.headers.get('content-type') || '';
    if (!type.includes('text/html')) {
      if (mode !== 'refresh') location.assign(url);
      return false;
    }
    const html = await response.text();
    // A newer navigation started meanwhile: its page wins.
    if (ticket !== navigating) return false;
    const doc = new DOMParser().parseFromString(html, 'text/html');
    const incoming = doc.querySelector('.frame');
    const current = document.querySelector('.frame');
    if (!incoming || !current) {
      if (mode !== 'refresh') location.assign(url);
      return false;
    }
    const stamp = stampOf(doc);
    const fresh = [];
    morph(current, document.adoptNode(incoming), mode, fresh);
    document.title = doc.title;
    if (stamp !== null) showing = stamp;
    else if (version !== null) showing = version;
    if (islandsReady() && window.__hydrateIsland) {
      for (const el of fresh) window.__hydrateIsland(el, el.dataset.component);
    }
    if (mode !== 'refresh') {
      const landed = response.redirected ? response.url : url;
      if (mode === 'navigate') history.pushState({}, '', landed);
      shown = location.pathname + location.search;
      const target = new URL(landed, location.href).hash.slice(1);
      const anchor = target && document.getElementById(target);
      if (anchor) anchor.scrollIntoView();
      else window.scrollTo(0, 0);
      // Screen readers start reading the new page's content.
      document.getElementById('main')?.focus({ preventScroll: true });
      // The version moved while the page was on its way.
      catchUp();
    }
    return true;
  }

  // Makes `old` (in the page) look like `next` (fetched), touching only
  // what differs: nodes that stay the same stay in place, so focus, typed
  // text and anything a test or a person holds on to survive. Islands are
  // kept whole when their key matches; new ones are collected in `fresh`
  // for hydration. On a refresh, `[data-keep]` regions and the open/closed
  // state of sections are left as the person left them.
  function morph(old, next, mode, fresh) {
    if (old.tagName === ISLAND.toUpperCase()) {
      if (keyOf(old) === keyOf(next) && (mode === 'refresh' || !old.closest('main'))) return;
      old.replaceWith(next);
      fresh.push(next);
      return;
    }
    if (mode === 'refresh' && old.hasAttribute('data-keep')) return;
    for (const { name, value } of [...next.attributes]) {
      if (mode === 'refresh' && old.tagName === 'DETAILS' && name === 'open') continue;
      // Set by the WASM once it runs; the server always sends "false".
      if (name === 'data-hydrated') continue;
      if (old.getAttribute(name) !== value) old.setAttribute(name, value);
    }
    for (const { name } of [...old.attributes]) {
      if (mode === 'refresh' && old.tagName === 'DETAILS' && name === 'open') continue;
      if (name === 'data-hydrated') continue;
      if (!next.hasAttribute(name)) old.removeAttribute(name);
    }
    const wanted = [...next.childNodes];
    let cursor = old.firstChild;
    for (const node of wanted) {
      // Something the new page no longer has before this node (a paragraph
      // that became a list, say): drop it rather than rebuild what follows.
      const match = cursor && findAhead(cursor, node);
      if (match) {
        while (cursor !== match) {
          const gone = cursor;
          cursor = cursor.nextSibling;
          gone.remove();
        }
        // Taken first: morph may replace the node (a changed island).
        const after = cursor.nextSibling;
        if (node.nodeType === Node.ELEMENT_NODE) morph(cursor, node, mode, fresh);
        else if (cursor.nodeValue !== node.nodeValue) cursor.nodeValue = node.nodeValue;
        cursor = after;
      } else {
        old.insertBefore(node, cursor);
        if (node.nodeType === Node.ELEMENT_NODE) {
          if (node.tagName === ISLAND.toUpperCase()) fresh.push(node);
          else fresh.push(...node.querySelectorAll(ISLAND));
        }
      }
    }
    while (cursor) {
      const gone = cursor;
      cursor = cursor.nextSibling;
      gone.remove();
    }
  }

  // The first of `from` and its next siblings that `node` can be morphed
  // into: an island with the same key, else any node of the same kind.
  // Text and markers only match in place, and nothing reaches past an
  // island (its state is worth more than rebuilding a node).
  function findAhead(from, node) {
    if (node.nodeType !== Node.ELEMENT_NODE) return sameKind(from, node) ? from : null;
    const island = node.tagName === ISLAND.toUpperCase();
    let fallback = null;
    for (let candidate = from; candidate; candidate = candidate.nextSibling) {
      if (!sameKind(candidate, node)) {
        if (!island && candidate.nodeName === ISLAND.toUpperCase()) return null;
        continue;
      }
      if (!island || keyOf(candidate) === keyOf(node)) return candidate;
      fallback = fallback || candidate;
    }
    return fallback;
  }

  // Whether two nodes are "the same thing" for morph: same type and tag,
  // and the same id or data-* identity where the page gives one.
  function sameKind(a, b) {
    if (a.nodeType !== b.nodeType) return false;
    if (a.nodeType !== Node.ELEMENT_NODE) return true;
    if (a.tagName !== b.tagName) return false;
    for (const name of ['id', 'data-app', 'data-step', 'data-release', 'data-channel', 'data-cluster', 'data-delivery']) {
      if (a.getAttribute(name) !== b.getAttribute(name)) return false;
    }
    return a.tagName !== ISLAND.toUpperCase() || a.dataset.component === b.dataset.component;
  }

  // Refetches the page; one asked for while another runs runs once more
  // after it, so the page ends up at least as new as the last ask.
  async function refresh() {
    if (refreshing) {
      refreshAgain = true;
      return;
    }
    refreshing = true;
    let shown;
    try {
      do {
        refreshAgain = false;
        shown = await swap(location.href, 'refresh');
      } while (refreshAgain);
    } finally {
      refreshing = false;
    }
    // The fetch failed while the feed still talks: try again a little later
    // rather than show an old page until the next change (offline, the
    // 'online' event below does).
    if (!shown && navigator.onLine) setTimeout(catchUp, 5000);
  }
  window.addEventListener('gantry:refresh', refresh);

  // Refreshes if the page shows an older version than the feed announced.
  function catchUp() {
    if (announced !== null && showing !== announced) refresh();
  }

  // Addresses that are pages of the dashboard (not the API, sign-in, files).
  const isPage = (url) => url.origin === location.origin
    && !/^\/(api|auth|pkg|hooks|metrics|healthz)(\/|$)/.test(url.pathname);

  document.addEventListener('click', (event) => {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey
      || event.shiftKey || event.altKey) return;
    const a = event.target instanceof Element && event.target.closest('a[href]');
    if (!a || a.target || a.hasAttribute('download') || a.dataset.swap === 'off') return;
    const url = new URL(a.href, location.href);
    if (!isPage(url)) return;
    // A jump within the page is the browser's business.
    if (url.pathname === location.pathname && url.search === location.search && url.hash) return;
    event.preventDefault();
    swap(url.href, 'navigate');
  });

  // Action forms (`data-action`): a POST to a server function, sent here
  // rather than by WASM, so a button costs the bundle nothing. The answer
  // is a sentence for the outcome region (`data-done` names its test id,
  // `data-error` the failure's) and the page refreshes; with `data-go` the
  // answer is the address to go to; `data-reset` empties the form once
  // sent. Without this script the form still posts (plain HTML).
  const say = (text, error, testid) => {
    const region = document.getElementById('outcome');
    if (!region) return;
    const message = document.createElement('div');
    message.className = error ? 'notice notice-error' : 'notice';
    message.setAttribute('role', error ? 'alert' : 'status');
    message.dataset.testid = testid;
    message.textContent = text;
    region.replaceChildren(message);
  };
  document.addEventListener('submit', async (event) => {
    const form = event.target;
    if (event.defaultPrevented || !(form instanceof HTMLFormElement) || !form.hasAttribute('data-action')) return;
    event.preventDefault();
    const button = event.submitter;
    if (button) button.disabled = true;
    try {
      const response = await fetch(form.action, {
        method: 'POST',
        headers: { Accept: 'application/json', 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(new FormData(form)),
        credentials: 'same-origin',
      });
      const text = await response.text();
      if (!response.ok) {
        // A server function's error reads `Kind|message`.
        say(text.replace(/^[A-Za-z]+\|/, ''), true, form.dataset.error || 'action-error');
        return;
      }
      const answer = JSON.parse(text);
      if (form.hasAttribute('data-go')) {
        location.assign(answer);
        return;
      }
      say(answer, false, form.dataset.done || 'action-outcome');
      if (form.hasAttribute('data-reset')) form.reset();
      window.dispatchEvent(new Event('gantry:refresh'));
    } catch {
      say('The server did not answer; try again.', true, form.dataset.error || 'action-error');
    } finally {
      if (button) button.disabled = false;
    }
  });

  // Filter forms (GET) become navigations too.
  document.addEventListener('submit', (event) => {
    const form = event.target;
    if (event.defaultPrevented || !(form instanceof HTMLFormElement)) return;
    if ((form.getAttribute('method') || 'get').toLowerCase() !== 'get') return;
    const url = new URL(form.action || location.href, location.href);
    if (!isPage(url)) return;
    url.search = new URLSearchParams(new FormData(form)).toString();
    event.preventDefault();
    swap(url.href, 'navigate');
  });

  // A page that shows something only the cluster knows (the resource tree,
  // a pod's log) is not in the change feed: it says how often to look
  // again (`data-refresh` seconds), and is refreshed while it is in view.
  setInterval(() => {
    const every = Number(document.querySelector('[data-refresh]')?.dataset.refresh || 0);
    if (!every || document.visibilityState !== 'visible') return;
    const now = Date.now();
    if (now - (window.__gantryPolled || 0) < every * 1000) return;
    window.__gantryPolled = now;
    refresh();
  }, 1000);

  window.addEventListener('popstate', () => {
    if (location.pathname + location.search !== shown) swap(location.href, 'back');
  });

  // The change feed (server-sent events, signed-in people only): a version
  // that differs from the one the page was rendered at (or, for a page
  // without one, from the feed's first) means "refresh", also the first
  // after a dropped connection comes back.
  // The browser retries a dropped connection by itself, but gives up when a
  // retry fails (offline): then we open a new one, when the network is back
  // or a little later. A connection can also outlive the network: the
  // version arrives, the refresh fails; the page catches up once online.
  // The newest version heard of is on `<html data-live-version>`.
  if (document.querySelector('[data-live="on"]')) {
    let feed = null;
    let retry = null;
    const open = () => {
      clearTimeout(retry);
      if (feed && feed.readyState !== EventSource.CLOSED) return;
      feed = new EventSource('/api/v1/changes');
      feed.addEventListener('version', (event) => {
        if (showing === null) showing = event.data;
        announced = event.data;
        document.documentElement.dataset.liveVersion = announced;
        catchUp();
      });
      feed.addEventListener('error', () => {
        if (feed.readyState === EventSource.CLOSED) retry = setTimeout(open, 5000);
      });
    };
    open();
    window.addEventListener('online', () => {
      open();
      catchUp();
    });
  }
})();
