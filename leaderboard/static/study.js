// asva-bench study sheet: answers kept in localStorage under the sheet id, exported as JSON.
// The page only knows letters; which model a letter is lives in the study's key.json.
(function () {
  'use strict';
  var sheet = JSON.parse(document.getElementById('sheet-data').textContent);
  var storeKey = 'asva-study:' + sheet.sheet_id;
  var total = sheet.examples.length * sheet.questions.length;

  function load() {
    try { return JSON.parse(localStorage.getItem(storeKey) || '{}') || {}; } catch (e) { return {}; }
  }
  var answers = load();   // {example: {question: letter}}

  function save() {
    try { localStorage.setItem(storeKey, JSON.stringify(answers)); }
    catch (e) { status('Could not save in this browser (' + e.name + '); export your votes now.'); }
  }

  function status(msg) { document.getElementById('export-status').textContent = msg; }

  function count() {
    var n = 0;
    sheet.examples.forEach(function (ex) {
      sheet.questions.forEach(function (q) { if (answers[ex.id] && answers[ex.id][q.id]) n++; });
    });
    return n;
  }

  function refresh() {
    document.getElementById('progress').textContent = count() + ' of ' + total + ' answered';
    document.querySelectorAll('section.example').forEach(function (sec) {
      var a = answers[sec.getAttribute('data-example')] || {};
      var done = sheet.questions.every(function (q) { return a[q.id]; });
      sec.classList.toggle('done', done);
    });
  }

  // restore saved answers, then listen for new ones
  document.querySelectorAll('section.example input[type=radio]').forEach(function (input) {
    var parts = input.name.split(':');
    var saved = answers[parts[0]] && answers[parts[0]][parts[1]];
    if (saved === input.value) input.checked = true;
    input.addEventListener('change', function () {
      if (!input.checked) return;
      answers[parts[0]] = answers[parts[0]] || {};
      answers[parts[0]][parts[1]] = input.value;
      save();
      refresh();
    });
  });

  function votes() {
    var list = [];
    sheet.examples.forEach(function (ex) {
      sheet.questions.forEach(function (q) {
        var c = answers[ex.id] && answers[ex.id][q.id];
        if (c && ex.letters.indexOf(c) >= 0) list.push({ example: ex.id, question: q.id, choice: c });
      });
    });
    return {
      schema: sheet.schema, study_id: sheet.study_id, sheet_id: sheet.sheet_id, rater: sheet.rater,
      exported: new Date().toISOString(), complete: list.length === total, answers: list
    };
  }

  document.getElementById('export').addEventListener('click', function () {
    var data = votes();
    var blob = new Blob([JSON.stringify(data, null, 1)], { type: 'application/json' });
    var a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = 'votes-' + sheet.sheet_id + '.json';
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
    status(data.complete ? 'Exported ' + a.download
      : 'Exported, but ' + (total - data.answers.length) + ' questions are unanswered: the tally will refuse an incomplete file.');
  });

  document.getElementById('next-open').addEventListener('click', function () {
    var open = Array.prototype.find.call(document.querySelectorAll('section.example'),
      function (sec) { return !sec.classList.contains('done'); });
    if (open) open.scrollIntoView({ behavior: 'smooth', block: 'start' });
  });

  // videos get their source when they come into view; "play together" restarts audio and videos
  function loadVideo(v) {
    var src = v.getAttribute('data-src');
    if (!src) return;
    v.removeAttribute('data-src');
    v.preload = 'auto';
    v.src = src;
  }
  var vids = document.querySelectorAll('video[data-src]');
  if ('IntersectionObserver' in window) {
    var io = new IntersectionObserver(function (entries) {
      entries.forEach(function (en) { if (en.isIntersecting) { loadVideo(en.target); io.unobserve(en.target); } });
    }, { rootMargin: '300px' });
    vids.forEach(function (v) { io.observe(v); });
  } else {
    vids.forEach(loadVideo);
  }
  document.querySelectorAll('button.play-all').forEach(function (b) {
    b.addEventListener('click', function () {
      var sec = b.closest('section.example');
      var media = sec.querySelectorAll('audio, video');
      media.forEach(function (m) { if (m.tagName === 'VIDEO') loadVideo(m); m.pause(); m.currentTime = 0; });
      media.forEach(function (m) { var p = m.play(); if (p && p.catch) p.catch(function () {}); });
    });
  });

  refresh();
})();
