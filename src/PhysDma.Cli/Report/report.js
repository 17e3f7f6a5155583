// PhysDma HTML report: draws the data embedded in #physdma-data with Chart.js (inlined above this script).
(function () {
  'use strict';
  const data = JSON.parse(document.getElementById('physdma-data').textContent);
  const app = document.getElementById('app');
  const palette = ['#4e79a7', '#f28e2b', '#59a14f', '#b07aa1', '#76b7b2', '#edc948', '#ff9da7', '#9c755f', '#bab0ac', '#e15759'];
  const kindColour = {
    mapped: '#4e79a7', iotlb: '#76b7b2', iotlb_stale: '#e15759', freed_queued: '#f28e2b', reserved: '#9d9d9d',
    bounce: '#59a14f', lazy: '#e15759'
  };
  const kindLabel = {
    mapped: 'mapped', iotlb: 'mapped, in IOTLB', iotlb_stale: 'unmapped, still in IOTLB (lazy window)',
    freed_queued: 'unmapped, IOVA waiting in the flush queue', reserved: 'reserved',
    bounce: 'bounce slot', lazy: 'lazy window: unmapped, still translated by the IOTLB'
  };

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  // A Gantt-style chart: one row per address range, the steps (a replay's events) along x, one dataset per holder or kind.
  function gantt(container, id, title, bars, datasetOrder, colourOf, labelOf, lastStep, unit) {
    const rows = [...new Set(bars.map(b => b.row))];
    const wrap = el('div', { class: 'chart', 'data-chart': id });
    wrap.append(el('h4', { text: title }));
    if (bars.length === 0) {
      wrap.append(el('p', { class: 'empty', text: 'nothing at any step' }));
      container.append(wrap);
      return null;
    }
    const canvas = el('canvas', { id });
    const box = el('div', { class: 'canvas-box', style: `height:${60 + rows.length * 26}px` }, canvas);
    wrap.append(box);
    const legend = el('ul', { class: 'legend' });
    container.append(wrap);
    const datasets = datasetOrder.filter(d => bars.some(b => b.dataset === d)).map((d, i) => ({
      label: labelOf(d),
      key: d,
      data: bars.filter(b => b.dataset === d).map(b => ({ x: b.x, y: b.row, info: b.info })),
      backgroundColor: colourOf(d, i),
      borderColor: '#222',
      borderWidth: 1,
      grouped: false,
      // Later kinds are drawn on top: an unmapped range still in the IOTLB shows over its IOVA waiting in the flush queue.
      order: -i,
      barPercentage: 0.9,
      categoryPercentage: 1.0
    }));
    for (const d of datasets) {
      const li = el('li', { class: 'legend-item', 'data-key': d.key });
      li.append(el('span', { class: 'swatch', style: `background:${d.backgroundColor}` }), el('span', { text: d.label + ` (${d.data.length})` }));
      legend.append(li);
    }
    wrap.append(legend);
    const chart = new Chart(canvas, {
      type: 'bar',
      data: { labels: rows, datasets },
      options: {
        indexAxis: 'y',
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              title: items => items.length ? items[0].raw.y : '',
              label: item => `${item.dataset.label}: ${unit}s ${item.raw.x[0]}–${item.raw.x[1] - 1}` + (item.raw.info ? ` · ${item.raw.info}` : '')
            }
          }
        },
        scales: {
          x: { type: 'linear', min: 0, max: lastStep + 1, title: { display: true, text: unit }, ticks: lastStep <= 60 ? { stepSize: 1, precision: 0 } : { precision: 0 } },
          y: { type: 'category', title: { display: false } }
        }
      }
    });
    canvas.physdmaChart = chart;
    return chart;
  }

  function hexRange(r) { return `${r.lo}–${r.hi}`; }

  // A span (a fact and the steps it held for, from `from` to one past the last) as a bar.
  function bar(span, row, dataset, info) {
    return { dataset, row, info, x: [span.from, span.to] };
  }

  function drawCharts(host, run) {
    const spans = run.spans || { swiotlb: [], iova: {}, reach: {}, last_step: 0 };
    const last = Math.max(0, spans.last_step);
    const slug = host.dataset.run;
    const unit = run.kind === 'replay' ? 'event' : 'step';

    // swiotlb occupancy: one dataset per mapping that held slots, coloured by that mapping.
    const occBars = spans.swiotlb.map(sl => {
      const holder = sl.holder + (sl.holder_step !== null && sl.holder_step !== undefined ? ` (${unit} ${sl.holder_step})` : '');
      const row = `slots ${sl.slot}–${sl.slot + sl.slots - 1} @ ${sl.addr}`;
      return bar(sl, row, holder, `${sl.size} B from ${sl.orig}, mapped at ${unit} ${sl.holder_step ?? '?'}`);
    });
    const holders = [...new Set(occBars.map(b => b.dataset))];
    const sec = el('div', { class: 'charts' });
    host.append(sec);
    gantt(sec, `occupancy-${slug}`, `swiotlb slot occupancy (hover a bar: who holds the slots and since which ${unit})`, occBars, holders,
      (d, i) => palette[i % palette.length], d => d, last, unit);

    // IOVA space per translated device.
    for (const dev of Object.keys(spans.iova).sort()) {
      const bars = spans.iova[dev].map(r =>
        bar(r, `IOVA ${hexRange(r)}`, r.kind, (r.holder ? `holder ${r.holder}` : '') + (r.phys ? ` → phys ${r.phys}` : '')));
      gantt(sec, `iova-${slug}-${dev}`, `IOVA space of ${dev}`, bars, ['reserved', 'mapped', 'iotlb', 'freed_queued', 'iotlb_stale'],
        d => kindColour[d], d => kindLabel[d], last, unit);
    }

    // Reachability per device: mapped, bounce slots, and the lazy window.
    for (const dev of Object.keys(spans.reach).sort()) {
      const bars = spans.reach[dev].map(r => bar(r, `phys ${hexRange(r)}`, r.kind, r.holder ? `mapping ${r.holder}` : ''));
      gantt(sec, `reach-${slug}-${dev}`, `what ${dev} can reach`, bars, ['mapped', 'bounce', 'lazy'],
        d => kindColour[d], d => kindLabel[d], last, unit);
    }
  }

  // A scenario's steps; or a replay's events, each with the trace line it came from.
  function stepsTable(run) {
    const replay = run.kind === 'replay';
    const t = el('table', { class: 'steps' });
    t.append(el('thead', {}, el('tr', {}, ...['#', replay ? 'event (line)' : 'op', 'outcome', 'why', replay ? 'trace line' : 'bytes seen', 'ok']
      .map(h => el('th', { text: h })))));
    const body = el('tbody');
    for (const s of run.steps) {
      const why = el('ol', { class: 'why' });
      for (const w of s.why || []) why.append(el('li', { text: w }));
      const ok = s.ok ? el('td', { class: 'ok', text: 'ok' }) : el('td', { class: 'fail', text: 'FAIL' });
      const attrs = { class: 'step', 'data-step': String(s.index) };
      if (replay) attrs['data-line'] = String(s.line);
      body.append(el('tr', attrs,
        el('td', { text: String(s.index) }),
        el('td', { text: s.op + (replay ? ` (line ${s.line})` : s.id ? ` (${s.id})` : '') }),
        el('td', { text: summary(s) }),
        el('td', {}, why),
        replay ? el('td', { class: 'trace-line', text: s.trace_line }) : el('td', { class: 'bytes', text: s.data || '' }),
        ok));
    }
    t.append(body);
    return t;
  }

  function summary(s) {
    const p = [];
    if (s.dev) p.push(s.dev);
    if (s.path) p.push(s.path);
    if (s.mapping) p.push(s.mapping);
    if (s.dma_addr) p.push('dma ' + s.dma_addr + (s.traced_dma_addr && s.traced_dma_addr !== s.dma_addr ? ` (traced ${s.traced_dma_addr})` : ''));
    if (s.bounce) p.push('via ' + s.bounce);
    if (s.iommu_prot) p.push('[' + s.iommu_prot.join(' ') + ']');
    if (s.segments) p.push(s.segments.map(g => `${g.dma_addr}+${g.len}`).join(' '));
    if (s.cache_ops && s.cache_ops.length) p.push(s.cache_ops.map(o => `${o.op} ${o.phys}+${o.size}`).join(' '));
    if (s.debug) p.push('dma-debug: ' + s.debug.join(', '));
    if (s.error) p.push('error ' + s.error);
    return p.join(' · ');
  }

  function topology(run) {
    const wrap = el('div', { class: 'topology' });
    wrap.append(el('h4', { text: 'PCI topology' }));
    const nodes = run.topology.nodes;
    const tree = el('ul', { class: 'tree' });
    const build = (parent, ul) => {
      for (const n of nodes.filter(n => (n.parent || null) === parent)) {
        const li = el('li', { class: 'node node-' + n.type.toLowerCase() }, el('b', { text: n.name }), ` ${n.type}${n.detail ? ' · ' + n.detail : ''}`);
        const sub = el('ul');
        build(n.name, sub);
        if (sub.childElementCount) li.append(sub);
        ul.append(li);
      }
    };
    build(null, tree);
    wrap.append(tree);
    const t = el('table', { class: 'pairs' });
    t.append(el('thead', {}, el('tr', {}, ...['provider', 'client', 'P2P map type', 'distance'].map(h => el('th', { text: h })))));
    const body = el('tbody');
    for (const p of run.topology.pairs) {
      const refused = p.type === 'PCI_P2PDMA_MAP_NOT_SUPPORTED';
      body.append(el('tr', { class: 'pair' + (refused ? ' refused' : ''), 'data-provider': p.provider, 'data-client': p.client, 'data-type': p.type },
        el('td', { text: p.provider }), el('td', { text: p.client }),
        el('td', { text: (refused ? '✗ refused: ' : '') + p.type }), el('td', { text: String(p.distance) })));
    }
    t.append(body);
    wrap.append(t);
    return wrap;
  }

  function runSection(run, i, open) {
    const det = el('details', { class: 'run', 'data-run': String(i), 'data-scenario': run.scenario, 'data-machine': run.machine });
    if (open) det.setAttribute('open', '');
    det.append(el('summary', {}, el('b', { text: run.scenario }), ` on ${run.machine} · ${run.file} · `,
      run.ok ? el('span', { class: 'ok', text: 'OK' }) : el('span', { class: 'fail', text: 'FAILED' })));
    const body = el('div', { class: 'run-body' });
    det.append(body);
    let drawn = false;
    const draw = () => {
      if (drawn) return;
      drawn = true;
      body.dataset.run = String(i);
      if (run.kind === 'replay') {
        const r = run.replay;
        body.append(el('p', { class: 'replay-summary', text: `${r.events} trace events: ${r.replayed} replayed on ${run.machine}; ` +
          `${run.events_drawn} of ${run.events} DMA events drawn below; physical addresses ${r.phys_policy_text}` }));
        body.append(el('h3', { text: 'Events, decision trails and trace lines' }), stepsTable(run));
      } else {
        body.append(el('h3', { text: 'Steps, decision trails and bytes' }), stepsTable(run));
      }
      if ((run.failures || []).length) {
        const ul = el('ul', { class: 'failures' });
        for (const f of run.failures) ul.append(el('li', { text: `step ${f.step ?? 'final'} line ${f.line} ${f.field}: ${f.message}` }));
        body.append(ul);
      }
      body.append(el('h3', { text: run.kind === 'replay' ? 'Over the events' : 'Over the steps' }));
      drawCharts(body, run);
      body.append(topology(run));
    };
    if (open) draw(); else det.addEventListener('toggle', () => { if (det.open) draw(); });
    return det;
  }

  function matrixGrid(grids) {
    const wrap = el('section', { class: 'matrix' });
    wrap.append(el('h2', { text: 'Step × machine' }));
    for (const g of grids) {
      wrap.append(el('h3', { text: g.file }));
      const t = el('table', { class: 'grid', 'data-file': g.file });
      t.append(el('thead', {}, el('tr', {}, el('th', { text: '#' }), el('th', { text: 'step' }), ...g.machines.map(m => el('th', { text: m })))));
      const body = el('tbody');
      for (const r of g.rows) {
        const tr = el('tr', { class: 'grid-row' + (r.differs ? ' differs' : '') }, el('td', { text: r.index }), el('td', { text: (r.differs ? '≠ ' : '') + r.label }));
        for (const c of r.cells) {
          const td = el('td', { class: (c.ok ? '' : 'fail ') + (r.differs ? 'diff' : ''), text: c.text });
          if (c.why.length) td.title = c.why.join('\n');
          tr.append(td);
        }
        body.append(tr);
      }
      body.append(el('tr', { class: 'status' }, el('td'), el('td', { text: 'status' }),
        ...g.status.map(s => el('td', { class: s === 'ok' ? 'ok' : 'fail', text: s }))));
      t.append(body);
      wrap.append(t);
    }
    return wrap;
  }

  app.append(el('h1', { text: data.title }));
  if (data.grids) app.append(matrixGrid(data.grids));
  const runs = el('section', { class: 'runs' });
  runs.append(el('h2', { text: data.grids ? 'Runs (open one to draw it)' : 'Run' }));
  data.runs.forEach((r, i) => runs.append(runSection(r, i, !data.grids)));
  app.append(runs);
  document.body.dataset.ready = 'true';
})();
