// asva-bench leaderboard: sortable tables and the lazily loaded, paged clip gallery.
// Plain DOM code, no libraries, nothing fetched: works from file:// and any static server.
(function () {
  'use strict';

  // ---- sortable tables: cells carry data-v (a number, text, or "" for missing) ----
  function cellValue(row, col, type) {
    var raw = row.cells[col].getAttribute('data-v');
    if (raw === null || raw === '') return null;
    return type === 'num' ? parseFloat(raw) : raw;
  }

  function sortBody(body, col, type, sign) {
    // each tbody sorts on its own: reported rows never mix with measured ones; a section row stays first
    var rows = Array.prototype.slice.call(body.rows).filter(function (r) { return !r.classList.contains('section'); });
    var keyed = rows.map(function (r, i) { return { row: r, v: cellValue(r, col, type), i: i }; });
    keyed.sort(function (a, b) {
      if (a.v === null && b.v === null) return a.i - b.i;
      if (a.v === null) return 1;            // missing values last, whatever the direction
      if (b.v === null) return -1;
      var c = type === 'num' ? a.v - b.v : String(a.v).localeCompare(String(b.v));
      return c !== 0 ? sign * c : a.i - b.i;
    });
    var frag = document.createDocumentFragment();
    keyed.forEach(function (k) { frag.appendChild(k.row); });
    body.appendChild(frag);
  }

  function sortTable(table, col, dir) {
    var th = table.tHead.rows[0].cells[col];
    var type = th.getAttribute('data-type') || 'text';
    var sign = dir === 'asc' ? 1 : -1;
    Array.prototype.forEach.call(table.tBodies, function (body) { sortBody(body, col, type, sign); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', dir === 'asc' ? 'ascending' : 'descending');
  }

  function initSortable(table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      var btn = th.querySelector('button');
      if (!btn) return;
      btn.addEventListener('click', function () {
        var cur = th.getAttribute('aria-sort');
        var dir = cur ? (cur === 'ascending' ? 'desc' : 'asc') : (th.getAttribute('data-best') || 'asc');
        sortTable(table, col, dir);
      });
    });
  }

  // ---- gallery: one page of clips at a time; a video gets its src when it scrolls into view ----
  function initGallery(gallery, pager) {
    var items = Array.prototype.slice.call(gallery.querySelectorAll('figure.clip'));
    var pages = parseInt(pager.getAttribute('data-pages'), 10) || 1;
    var current = 0;
    var observer = 'IntersectionObserver' in window ? new IntersectionObserver(function (entries) {
      entries.forEach(function (en) {
        if (en.isIntersecting) { load(en.target); observer.unobserve(en.target); }
      });
    }, { rootMargin: '200px' }) : null;

    function load(video) {
      var src = video.getAttribute('data-src');
      if (!src) return;
      video.removeAttribute('data-src');
      video.preload = 'auto';  // clips are small; this shows the first frame at once
      video.src = src;
    }

    function show(page) {
      current = Math.max(0, Math.min(pages - 1, page));
      items.forEach(function (it) {
        var on = parseInt(it.getAttribute('data-page'), 10) === current;
        if (!on) it.querySelectorAll('video').forEach(function (v) { v.pause(); });
        it.hidden = !on;
        if (on) it.querySelectorAll('video[data-src]').forEach(function (v) {
          if (observer) observer.observe(v); else load(v);
        });
      });
      pager.querySelectorAll('button[data-page]').forEach(function (b) {
        if (parseInt(b.getAttribute('data-page'), 10) === current) b.setAttribute('aria-current', 'page');
        else b.removeAttribute('aria-current');
      });
      try { history.replaceState(null, '', '#page=' + (current + 1)); } catch (e) { /* some browsers refuse on file:// */ }
    }

    pager.addEventListener('click', function (ev) {
      var b = ev.target.closest('button');
      if (!b) return;
      var go = b.getAttribute('data-go');
      show(go === 'prev' ? current - 1 : go === 'next' ? current + 1 : parseInt(b.getAttribute('data-page'), 10));
    });

    gallery.addEventListener('click', function (ev) {
      var b = ev.target.closest('button.play-pair');
      if (!b) return;
      var fig = b.closest('figure.clip');
      var vids = fig.querySelectorAll('video');
      vids.forEach(function (v) { load(v); v.currentTime = 0; });
      vids.forEach(function (v) { var p = v.play(); if (p && p.catch) p.catch(function () {}); });
    });

    var m = /#page=(\d+)/.exec(location.hash);
    show(m ? parseInt(m[1], 10) - 1 : 0);
  }

  document.addEventListener('DOMContentLoaded', function () {
    document.querySelectorAll('table.sortable').forEach(initSortable);
    var gallery = document.getElementById('gallery');
    var pager = document.getElementById('pager');
    if (gallery && pager) initGallery(gallery, pager);
  });
})();
