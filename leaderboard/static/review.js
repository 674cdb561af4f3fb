// asva-bench curation review: accept / reject marks per item, kept in localStorage, exported as JSON.
// Sorting comes from leaderboard.js (table.sortable); this file only handles marks and the filter.
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('review-data').textContent);
  var storeKey = 'asva-curation:' + data.curation + ':' + data['class'];
  var byId = {};
  data.items.forEach(function (it) { byId[it.id] = it; });

  function load() {
    try { return JSON.parse(localStorage.getItem(storeKey) || '{}') || {}; } catch (e) { return {}; }
  }
  var marks = load();   // {item id: "accept" | "reject"}

  function status(msg) { document.getElementById('export-status').textContent = msg; }

  function save() {
    try { localStorage.setItem(storeKey, JSON.stringify(marks)); }
    catch (e) { status('Could not save in this browser (' + e.name + '); export your marks now.'); }
  }

  function rows() { return Array.prototype.slice.call(document.querySelectorAll('#items tbody tr.item')); }

  function refresh() {
    var n = 0;
    rows().forEach(function (tr) {
      var m = marks[tr.getAttribute('data-item')];
      if (m) n++;
      tr.classList.toggle('marked-accept', m === 'accept');
      tr.classList.toggle('marked-reject', m === 'reject');
      tr.querySelector('td.mark').setAttribute('data-v', m || '');
    });
    document.getElementById('progress').textContent = n + ' of ' + data.items.length + ' marked';
    applyFilter();
  }

  function applyFilter() {
    var show = document.getElementById('show').value;
    rows().forEach(function (tr) {
      var kept = tr.classList.contains('kept');
      var on = show === 'all' || (show === 'kept' && kept) || (show === 'dropped' && !kept) ||
        (show === 'unmarked' && !marks[tr.getAttribute('data-item')]);
      tr.hidden = !on;
      if (!on) tr.querySelectorAll('video').forEach(function (v) { v.pause(); });
    });
  }

  rows().forEach(function (tr) {
    var id = tr.getAttribute('data-item');
    tr.querySelectorAll('input[type=radio]').forEach(function (input) {
      if (marks[id] === input.value) input.checked = true;
      input.addEventListener('change', function () {
        if (!input.checked) return;
        marks[id] = input.value;
        save();
        refresh();
      });
    });
  });
  document.getElementById('show').addEventListener('change', applyFilter);

  document.getElementById('export').addEventListener('click', function () {
    var list = Object.keys(marks).filter(function (id) { return byId[id]; }).sort().map(function (id) {
      var it = byId[id];
      return { item: id, video: it.video, start: it.start, end: it.end, kind: it.kind, mark: marks[id] };
    });
    var out = { schema: data.schema, curation: data.curation, 'class': data['class'],
                exported: new Date().toISOString(), marks: list };
    var blob = new Blob([JSON.stringify(out, null, 1)], { type: 'application/json' });
    var a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = 'review-' + data['class'].replace(/[^A-Za-z0-9]+/g, '-') + '.json';
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
    status('Exported ' + list.length + ' marks as ' + a.download);
  });

  refresh();
})();
