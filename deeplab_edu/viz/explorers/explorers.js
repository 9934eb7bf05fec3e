/* deeplab-edu explorers: the course's core interactive figures in plain JavaScript.
 *
 * They run in the static book and in JupyterLab without a kernel, and load nothing from the
 * network. deeplab_edu.viz.explorers.show(name, ...) inlines this file (with explorers.css) in
 * the HTML output of a notebook cell and mounts one explorer:
 *
 *   "atrous"           chapter 01: which inputs eq. (1) of DeepLabv3 reads for one output, for a
 *                      chosen kernel size, rate, stride and padding, in 1-D and on a square
 *                      input (deeplab_edu.atrous, deeplab_edu.viz.atrous.atrous_widget);
 *   "receptive_field"  chapter 02: a layer stack's receptive field drawn on the photograph, with
 *                      its effective field when every weight is 1 (deeplab_edu.receptive_field,
 *                      deeplab_edu.gridding.path_counts, deeplab_edu.viz.receptive_field);
 *   "boundary"         chapter 04: valid taps at the border against the rate, DeepLabv3 Fig. 4
 *                      (deeplab_edu.boundary).
 *
 * `core` holds the arithmetic, a port of the package's functions with the same names in
 * camelCase; tests/test_explorers.py runs it under node on a grid of settings and compares every
 * number with the Python package. Under node, `require()` returns the API (no DOM needed).
 */
(function (root) {
  "use strict";
  var VERSION = "2";
  if (root.DeeplabEduExplorers && root.DeeplabEduExplorers.version === VERSION) {
    return; // already defined by an earlier explorer on the same page
  }

  // ------------------------------------------------------------------ arithmetic (core)
  function int(value, name, minimum) {
    if (typeof value !== "number" || !Number.isInteger(value)) {
      throw new Error(name + " must be an integer, got " + value);
    }
    if (value < minimum) {
      throw new Error(name + " must be >= " + minimum + ", got " + value);
    }
    return value;
  }

  /* deeplab_edu.atrous.effective_kernel_size: k + (k - 1)(r - 1). */
  function effectiveKernelSize(kernelSize, rate) {
    var k = int(kernelSize, "kernel_size", 1);
    var r = int(rate === undefined ? 1 : rate, "rate", 1);
    return k + (k - 1) * (r - 1);
  }

  /* deeplab_edu.atrous.conv_output_size: floor((i + 2p - k_eff) / s) + 1; throws when empty. */
  function convOutputSize(inputSize, kernelSize, stride, padding, dilation) {
    var i = int(inputSize, "input_size", 1);
    var p = int(padding === undefined ? 0 : padding, "padding", 0);
    var s = int(stride === undefined ? 1 : stride, "stride", 1);
    var span = effectiveKernelSize(kernelSize, dilation === undefined ? 1 : dilation);
    if (i + 2 * p < span) {
      throw new Error("input_size + 2 * padding = " + (i + 2 * p) + " is smaller than the effective kernel size " +
        span + ": the convolution has no output");
    }
    return Math.floor((i + 2 * p - span) / s) + 1;
  }

  /* deeplab_edu.atrous.input_positions: output i reads x[s*i - p + r*k], k = 0..K-1. */
  function inputPositions(outputIndex, kernelSize, rate, stride, padding) {
    var i = int(outputIndex, "output_index", 0);
    var k = int(kernelSize, "kernel_size", 1);
    var r = int(rate === undefined ? 1 : rate, "rate", 1);
    var s = int(stride === undefined ? 1 : stride, "stride", 1);
    var p = int(padding === undefined ? 0 : padding, "padding", 0);
    var out = [];
    for (var t = 0; t < k; t++) out.push(s * i - p + r * t);
    return out;
  }

  var LINE = /^(conv|pool)((?: +[ksdp]=\d+)*) *$/;
  // whitespace (\s, trim()) becomes a space, as in the package's parser (viz/receptive_field.py, _SPACE)
  var SPACE = /[\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]/g;

  /* deeplab_edu.viz.receptive_field.parse_layer_stack: one layer per line, "conv k=3 s=2 d=1 p=1". */
  function parseLayerStack(text) {
    var layers = [];
    var lines = String(text).split(/\r\n|\r|\n/);
    for (var n = 1; n <= lines.length; n++) {
      var raw = lines[n - 1];
      var line = raw.split("#")[0].replace(SPACE, " ").replace(/^ +| +$/g, "").toLowerCase();
      if (!line) continue;
      var m = LINE.exec(line);
      if (!m) {
        throw new Error("line " + n + " ('" + raw.trim() + "'): write e.g. 'conv k=3 s=1 d=2' or 'pool k=2 s=2'");
      }
      var kind = m[1];
      var opts = {};
      m[2].split(/\s+/).filter(Boolean).forEach(function (o) {
        var kv = o.split("=");
        opts[kv[0]] = parseInt(kv[1], 10);
      });
      var k = "k" in opts ? opts.k : 3;
      var s = "s" in opts ? opts.s : 1;
      var d = "d" in opts ? opts.d : 1;
      if (kind === "pool" && d !== 1) throw new Error("line " + n + ": pooling layers take no dilation here");
      var p = "p" in opts ? opts.p : Math.floor(d * (k - 1) / 2);
      if (kind === "pool" && p > Math.floor(k / 2)) {
        throw new Error("line " + n + ": pooling padding p=" + p + " must be at most k // 2 = " + Math.floor(k / 2));
      }
      [["kernel", k, 1], ["stride", s, 1], ["padding", p, 0], ["dilation", d, 1]].forEach(function (c) {
        if (c[1] < c[2]) {
          throw new Error("line " + n + " ('" + raw.trim() + "'): " + c[0] + " must be an int >= " + c[2] + ", got " + c[1]);
        }
      });
      layers.push({ kind: kind, kernel: k, stride: s, padding: p, dilation: d, name: kind + n });
    }
    if (!layers.length) throw new Error("the layer stack is empty: write at least one line such as 'conv k=3'");
    return layers;
  }

  /* deeplab_edu.receptive_field.receptive_field: size r0, effective stride S0 and padding P0. */
  function receptiveField(layers) {
    var rf = { size: 1, stride: 1, padding: 0 };
    layers.forEach(function (l) { rf = stepField(rf, l); });
    return rf;
  }

  /* deeplab_edu.receptive_field.receptive_field_table: the field after every layer. */
  function receptiveFieldTable(layers) {
    var rf = { size: 1, stride: 1, padding: 0 };
    return layers.map(function (l, i) {
      rf = stepField(rf, l);
      return {
        layer: l.name || "layer " + (i + 1), kernel: l.kernel, stride: l.stride, padding: l.padding,
        dilation: l.dilation, "effective kernel": l.dilation * (l.kernel - 1) + 1,
        "receptive field": rf.size, "effective stride": rf.stride, "effective padding": rf.padding,
      };
    });
  }

  /* One step of the recurrences (ReceptiveField.then). */
  function stepField(rf, l) {
    var kEff = l.dilation * (l.kernel - 1) + 1;
    return { size: rf.size + (kEff - 1) * rf.stride, stride: rf.stride * l.stride, padding: rf.padding + l.padding * rf.stride };
  }

  /* ReceptiveField.region: the input interval [u, v] seen by output `index` (may pass the edge). */
  function region(rf, index) {
    var u = index * rf.stride - rf.padding;
    return [u, u + rf.size - 1];
  }

  /* deeplab_edu.gridding.path_counts: along one axis, the paths from each input pixel to output unit
   * `index` (also d y / d x when every weight is 1 and nothing is nonlinear, Luo et al.'s simplest case of
   * the effective receptive field); pooling counts as a uniform window. */
  function pathCounts(layers, size, index) {
    var sizes = [size];
    layers.forEach(function (l) {
      sizes.push(convOutputSize(sizes[sizes.length - 1], l.kernel, l.stride, l.padding, l.dilation));
    });
    var nOut = sizes[sizes.length - 1];
    if (typeof index !== "number" || !Number.isInteger(index) || index < 0 || index >= nOut) {
      throw new Error("index must be an output unit in 0.." + (nOut - 1) + ", got " + index);
    }
    var paths = [];
    for (var o = 0; o < nOut; o++) paths.push(o === index ? 1 : 0);
    for (var n = layers.length - 1; n >= 0; n--) {
      var l = layers[n], back = [];
      for (var q = 0; q < sizes[n]; q++) back.push(0);
      for (o = 0; o < paths.length; o++) {
        if (paths[o] === 0) continue;
        for (var t = 0; t < l.kernel; t++) {
          var pos = o * l.stride - l.padding + t * l.dilation;
          if (pos >= 0 && pos < sizes[n]) back[pos] += paths[o];
        }
      }
      paths = back;
    }
    return paths;
  }

  /* Output size of a stack on an input of `size` pixels (what the PyTorch model returns). */
  function stackOutputSize(layers, size) {
    var n = size;
    layers.forEach(function (l, index) {
      try {
        n = convOutputSize(n, l.kernel, l.stride, l.padding, l.dilation);
      } catch (err) {  // say which line, as the parser does ("input_size" alone reads like the photo's size)
        var line = l.name ? l.name.replace(/^[a-z]+/, "") : String(index + 1);  // parseLayerStack names it kind + line
        throw new Error("line " + line + ": this layer gets a map of " + n + " px, and " +
          err.message.replace("input_size", "its input size"));
      }
    });
    return n;
  }

  function oddKernel(kernel) {
    var k = int(kernel === undefined ? 3 : kernel, "kernel", 1);
    if (k % 2 === 0) throw new Error("kernel must be odd (got " + k + "): 'same' zero padding is symmetric only for odd kernels");
    return k;
  }

  /* deeplab_edu.boundary.possible_counts: every product a*b with 1 <= a, b <= k, sorted. */
  function possibleCounts(kernel) {
    var k = oddKernel(kernel);
    var seen = {};
    for (var a = 1; a <= k; a++) for (var b = 1; b <= k; b++) seen[a * b] = true;
    return Object.keys(seen).map(Number).sort(function (x, y) { return x - y; });
  }

  /* deeplab_edu.boundary.valid_tap_counts_1d: taps i + r*j (|j| <= (k-1)/2) inside [0, n). */
  function validTapCounts1d(length, kernel, rate) {
    var n = int(length, "length", 1);
    var k = oddKernel(kernel);
    var r = int(rate === undefined ? 1 : rate, "rate", 1);
    var half = (k - 1) / 2;
    var out = [];
    for (var i = 0; i < n; i++) {
      var c = 0;
      for (var j = -half; j <= half; j++) {
        var t = i + r * j;
        if (t >= 0 && t < n) c++;
      }
      out.push(c);
    }
    return out;
  }

  /* deeplab_edu.boundary.valid_tap_counts: the outer product of the row and column counts. */
  function validTapCounts(height, width, kernel, rate) {
    var rows = validTapCounts1d(int(height, "height", 1), kernel, rate);
    var cols = validTapCounts1d(int(width, "width", 1), kernel, rate);
    return rows.map(function (a) { return cols.map(function (b) { return a * b; }); });
  }

  /* deeplab_edu.boundary.valid_weight_fractions: {count: fraction of positions}, zeros included. */
  function validWeightFractions(height, width, rate, kernel) {
    var k = oddKernel(kernel);
    var rowHist = histogram(validTapCounts1d(height, k, rate), k);
    var colHist = histogram(validTapCounts1d(width, k, rate), k);
    var out = {};
    possibleCounts(k).forEach(function (c) { out[c] = 0; });
    for (var a = 1; a <= k; a++) {
      for (var b = 1; b <= k; b++) out[a * b] += (rowHist[a] / height) * (colHist[b] / width);
    }
    return out;
  }

  function histogram(values, k) {
    var h = [];
    for (var i = 0; i <= k; i++) h.push(0);
    values.forEach(function (v) { h[v] += 1; });
    return h;
  }

  /* deeplab_edu.boundary.figure4_curves: for each count, its fraction of positions at each rate. */
  function figure4Curves(height, width, rates, kernel) {
    if (!rates.length) throw new Error("rates is empty; give at least one atrous rate");
    var curves = { rates: rates.slice() };
    var rows = rates.map(function (r) { return validWeightFractions(height, width, r, kernel); });
    possibleCounts(kernel).forEach(function (c) {
      curves[c] = rows.map(function (row) { return row[c]; });
    });
    return curves;
  }

  /* deeplab_edu.boundary.mean_valid_fraction: average share of the k*k weights in use. */
  function meanValidFraction(height, width, rate, kernel) {
    var k = oddKernel(kernel);
    var counts = validTapCounts(height, width, k, rate);
    var total = 0;
    counts.forEach(function (row) { row.forEach(function (c) { total += c; }); });
    return total / (height * width) / (k * k);
  }

  var core = {
    effectiveKernelSize: effectiveKernelSize, convOutputSize: convOutputSize, inputPositions: inputPositions,
    parseLayerStack: parseLayerStack, receptiveField: receptiveField, receptiveFieldTable: receptiveFieldTable,
    region: region, stackOutputSize: stackOutputSize, pathCounts: pathCounts,
    possibleCounts: possibleCounts,
    validTapCounts1d: validTapCounts1d, validTapCounts: validTapCounts, validWeightFractions: validWeightFractions,
    figure4Curves: figure4Curves, meanValidFraction: meanValidFraction, percent: pct, setLastRate: setLastRate,
  };

  // ------------------------------------------------------------------ DOM helpers
  var SVGNS = "http://www.w3.org/2000/svg";
  var TAP = "#e8743b", OUT = "#2a7ab0", PAD = "#d9d9d9", SQUARE = "#ffd23f";
  var CURVE_DASHES = ["", "7,3", "2,3"];  // the curves differ by dash too, not by colour alone

  function el(tag, attrs, parent, text) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  function svg(tag, attrs, parent, text) {
    var node = document.createElementNS(SVGNS, tag);
    setAttrs(node, attrs);
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  function setAttrs(node, attrs) {
    Object.keys(attrs || {}).forEach(function (key) {
      if (attrs[key] !== undefined && attrs[key] !== null) node.setAttribute(key, attrs[key]);
    });
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  /* A labelled range slider; `onInput(value)` runs on every move. */
  function slider(parent, name, label, min, max, value, onInput) {
    var wrap = el("label", { "class": "dle-control" }, parent);
    el("span", { "class": "dle-label" }, wrap, label);
    var input = el("input", { type: "range", name: name, min: min, max: max, step: 1, value: value, "aria-label": label }, wrap);
    var shown = el("output", { "class": "dle-value" }, wrap, String(value));
    input.addEventListener("input", function () {
      shown.textContent = input.value;
      onInput(parseInt(input.value, 10));
    });
    return {
      input: input,
      get value() { return parseInt(input.value, 10); },
      setRange: function (lo, hi) {
        input.min = lo;
        input.max = hi;
        if (parseInt(input.value, 10) > hi) input.value = hi;
        if (parseInt(input.value, 10) < lo) input.value = lo;
        shown.textContent = input.value;
      },
      set: function (v) { input.value = v; shown.textContent = input.value; },
    };
  }

  /* A share in percent: one decimal, or two significant digits below 1 % so that no share above 0 reads "0.0%". */
  function pct(x) { return (x > 0 && x < 0.01 ? (100 * x).toPrecision(2) : (100 * x).toFixed(1)) + "%"; }

  /* The line under the controls: read aloud by screen readers whenever it changes. */
  function messageBox(root) { return el("div", { "class": "dle-message", "aria-live": "polite" }, root); }

  // ------------------------------------------------------------------ chapter 01: eq. (1)
  function mountAtrous(root, opts) {
    var state = {
      input_size: opts.input_size, kernel_size: opts.kernel_size, rate: opts.rate,
      stride: opts.stride, padding: opts.padding, output_index: opts.output_index,
    };
    var controls = el("div", { "class": "dle-controls" }, root);
    var sliders = {};
    [["input_size", "input size n", 3, 24], ["kernel_size", "kernel size K", 1, 7], ["rate", "rate r", 1, 6],
      ["stride", "stride s", 1, 3], ["padding", "padding p", 0, 8]].forEach(function (c) {
      sliders[c[0]] = slider(controls, c[0], c[1], c[2], c[3], state[c[0]], function (v) { state[c[0]] = v; draw(); });
    });
    sliders.output_index = slider(controls, "output_index", "output i", 0, 0, 0, function (v) { state.output_index = v; draw(); });
    var play = el("button", { type: "button", "class": "dle-button", name: "play" }, controls, "▶ walk i");
    var timer = null;
    play.addEventListener("click", function () {
      if (timer) { clearInterval(timer); timer = null; play.textContent = "▶ walk i"; return; }
      play.textContent = "■ stop";
      timer = setInterval(function () {
        // the explorer was replaced (a cell run again, mount() on the same node): stop drawing into the old one
        if (!figure.isConnected) { clearInterval(timer); timer = null; return; }
        var top = parseInt(sliders.output_index.input.max, 10);
        state.output_index = state.output_index >= top ? 0 : state.output_index + 1;
        draw();
      }, 700);
    });
    var message = messageBox(root);
    var figure = el("div", { "class": "dle-figure dle-row" }, root);

    function draw() {
      clear(figure);
      var n = state.input_size, k = state.kernel_size, r = state.rate, s = state.stride, p = state.padding;
      var nOut;
      try {
        nOut = convOutputSize(n, k, s, p, r);
      } catch (err) {
        sliders.output_index.setRange(0, 0);
        state.output_index = 0;
        root.setAttribute("data-output-size", "0");
        root.setAttribute("data-taps", "");
        root.setAttribute("data-taps-2d", "");
        message.innerHTML = "<b>no output</b>: the padded input (" + (n + 2 * p) + ") is shorter than the effective kernel (" +
          effectiveKernelSize(k, r) + ")";
        return;
      }
      sliders.output_index.setRange(0, nOut - 1);
      state.output_index = Math.min(state.output_index, nOut - 1);
      sliders.output_index.set(state.output_index);
      var i = state.output_index;
      var taps = inputPositions(i, k, r, s, p);
      root.setAttribute("data-output-size", String(nOut));
      root.setAttribute("data-taps", taps.join(","));
      message.innerHTML = "output size <b>" + nOut + "</b> = floor((n + 2p − K − (K−1)(r−1)) / s) + 1 = floor((" + n +
        " + " + 2 * p + " − " + effectiveKernelSize(k, r) + ") / " + s + ") + 1; effective kernel <b>" +
        effectiveKernelSize(k, r) + "</b>";
      var cells = n + 2 * p;
      var cell = Math.max(14, Math.min(34, Math.floor(640 / cells)));
      var narrow = cell < 24;  // "x10" would overlap its neighbours: the index alone (the title says x and y)
      var width = cells * cell + 20, height = 4.2 * cell + 46;
      var terms = taps.map(function (j, t) { return (j < 0 || j >= n ? "0" : "x[" + j + "]") + "·w[" + t + "]"; });
      var g = svg("svg", { width: width, height: height, viewBox: "0 0 " + width + " " + height, role: "img",
        "aria-label": "output " + i + " reads y[" + i + "] = " + terms.join(" + "), "class": "dle-svg" }, figure);
      var x0 = 10, yIn = 30, yOut = yIn + 2.6 * cell;
      svg("text", { x: x0, y: 16, "class": "dle-title" }, g, "y[" + i + "] = " + terms.join(" + "));
      var xOf = function (j) { return x0 + (j + p) * cell; };
      for (var j = -p; j < n + p; j++) {
        var isPad = j < 0 || j >= n, isTap = taps.indexOf(j) >= 0;
        svg("rect", { x: xOf(j), y: yIn, width: cell, height: cell, "data-index": j,
          "class": "dle-input" + (isTap ? " dle-tap" : "") + (isPad ? " dle-pad" : ""),
          fill: isTap ? TAP : isPad ? PAD : "white", stroke: "black" }, g);
        svg("text", { x: xOf(j) + cell / 2, y: yIn + cell / 2 + 4, "text-anchor": "middle", "class": "dle-cell-text" }, g,
          isPad ? "0" : narrow ? String(j) : "x" + j);
      }
      var offset = x0 + (cells - nOut) / 2 * cell;
      for (var o = 0; o < nOut; o++) {
        svg("rect", { x: offset + o * cell, y: yOut, width: cell, height: cell, "data-index": o,
          "class": "dle-output" + (o === i ? " dle-selected" : ""), fill: o === i ? OUT : "white", stroke: "black" }, g);
        svg("text", { x: offset + o * cell + cell / 2, y: yOut + cell / 2 + 4, "text-anchor": "middle",
          "class": "dle-cell-text", fill: o === i ? "white" : "black" }, g, narrow ? String(o) : "y" + o);
      }
      taps.forEach(function (jj, t) {
        svg("line", { x1: xOf(jj) + cell / 2, y1: yIn + cell, x2: offset + i * cell + cell / 2, y2: yOut,
          stroke: TAP, "stroke-width": 1.5, "class": "dle-arrow" }, g);
        svg("text", { x: xOf(jj) + cell / 2, y: yIn - 3, "text-anchor": "middle", fill: TAP, "class": "dle-cell-text" }, g, "w" + t);
      });
      var square = drawAtrous2d(figure, n, k, r, s, p, i);
      root.setAttribute("data-taps-2d", square ? square.output + ":" + square.taps.join(",") : "");
    }
    draw();
    return { draw: draw, state: state };
  }

  /* The 2-D picture beside it, as atrous_widget draws deeplab_edu.viz.atrous.plot_eq1_2d: a square
     input of side min(n, 11) (at least 3; padding shaded) with the k x k taps of output (m, m),
     m = min(i, last output), and their span dashed. Returns {output: m, taps}, or null when the
     square has no output (a note says why in its place). */
  function drawAtrous2d(parent, n, k, r, s, p, i) {
    var side = Math.max(3, Math.min(n, 11)), nOut;
    try {
      nOut = convOutputSize(side, k, s, p, r);
    } catch (err) {
      el("p", { "class": "dle-note dle-2d-note" }, parent, "No 2-D picture: on the " + side + "×" + side +
        " input it draws (n shown up to 11) the effective kernel " + effectiveKernelSize(k, r) +
        " is longer than the padded side " + (side + 2 * p) + ".");
      return null;
    }
    var m = Math.min(i, nOut - 1), taps = inputPositions(m, k, r, s, p);
    var cells = side + 2 * p, cell = Math.max(8, Math.min(20, Math.floor(260 / cells)));
    var x0 = 10, y0 = 36, size = cells * cell;
    var g = svg("svg", { width: size + 2 * x0, height: size + y0 + 6, viewBox: "0 0 " + (size + 2 * x0) + " " + (size + y0 + 6),
      role: "img", "aria-label": "in 2-D, output (" + m + ", " + m + ") reads the " + k + " by " + k + " inputs at rows and columns " +
        taps.join(", "), "class": "dle-svg dle-2d" }, parent);
    svg("text", { x: x0, y: 14, "class": "dle-title" }, g, "taps of y[" + m + "," + m + "] on a " + side + "×" + side + " input");
    svg("text", { x: x0, y: 28, "class": "dle-title" }, g, "(output " + nOut + "×" + nOut + (n > side ? "; n shown up to 11)" : ")"));
    for (var a = -p; a < side + p; a++) {
      for (var b = -p; b < side + p; b++) {
        var isPad = a < 0 || a >= side || b < 0 || b >= side, isTap = taps.indexOf(a) >= 0 && taps.indexOf(b) >= 0;
        svg("rect", { x: x0 + (b + p) * cell, y: y0 + (a + p) * cell, width: cell, height: cell, "data-row": a, "data-col": b,
          "class": "dle-input-2d" + (isTap ? " dle-tap-2d" : ""), fill: isTap ? TAP : isPad ? PAD : "white",
          stroke: "#666", "stroke-width": 0.6 }, g);
      }
    }
    var span = (taps[taps.length - 1] - taps[0] + 1) * cell;
    svg("rect", { x: x0 + (taps[0] + p) * cell, y: y0 + (taps[0] + p) * cell, width: span, height: span, fill: "none",
      stroke: TAP, "stroke-width": 2, "stroke-dasharray": "5,3", "class": "dle-span-2d" }, g);
    return { output: m, taps: taps };
  }

  // ------------------------------------------------------------------ chapter 02: receptive field
  function setLastRate(text, rate) {
    var lines = text.split(/(\r\n|\r|\n)/);  // lines at even indices, their line ends (kept) at odd ones
    for (var n = lines.length - 1; n >= 0; n -= 2) {
      var body = lines[n].split("#")[0];
      if (/^\s*conv\b/i.test(body)) {
        var comment = lines[n].slice(body.length);
        var found, last = null, re = /\bd=\d+/gi;
        while ((found = re.exec(body)) !== null) last = found;  // the parser keeps the last d= of a line
        body = last ? body.slice(0, last.index) + "d=" + rate + body.slice(last.index + last[0].length)
          : body.replace(/\s*$/, function (space) { return " d=" + rate + (comment ? space || " " : ""); });
        lines[n] = body + comment;
        return lines.join("");
      }
    }
    return text;
  }

  function lastRate(layers) {
    for (var n = layers.length - 1; n >= 0; n--) if (layers[n].kind === "conv") return layers[n].dilation;
    return null;
  }

  /* The package's hex colours ("#rrggbb") as [r, g, b] arrays, parsed once per explorer. */
  function parseColours(colours) {
    return colours.map(function (c) {
      return [parseInt(c.slice(1, 3), 16), parseInt(c.slice(3, 5), 16), parseInt(c.slice(5, 7), 16)];
    });
  }

  /* deeplab_edu.viz.receptive_field's colour map (ERF_CMAP, parsed by parseColours) at v in [0, 1], as [r, g, b]. */
  function colourAt(rgbs, v) {
    return rgbs[Math.min(rgbs.length - 1, Math.floor(v * rgbs.length))];
  }

  /* A canvas of h x w pixels, each coloured by paint(a, b) -> [r, g, b, alpha 0..255], as a PNG data URI. */
  function paintedImage(h, w, paint) {
    var canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    var ctx = canvas.getContext("2d"), image = ctx.createImageData(w, h);
    for (var a = 0; a < h; a++) {
      for (var b = 0; b < w; b++) {
        var px = paint(a, b), k = 4 * (a * w + b);
        for (var q = 0; q < 4; q++) image.data[k + q] = px[q];
      }
    }
    ctx.putImageData(image, 0, 0);
    return canvas.toDataURL("image/png");
  }

  /* The effective map of unit (i, j) with every weight 1 (the outer product of the two axes' path counts):
   * over the photograph, coloured as plot_layer_stack's imshow (ERF_CMAP, alpha 0.85 sqrt), and beside it the
   * receptive field alone, enlarged, with the pixels no path reaches in grey. Returns the sentence for the
   * message: how many rows, columns and pixels of the field are never read. */
  function drawPathCounts(g, figure, layers, size, rf, i, j, rgbs) {
    var rows = pathCounts(layers, size, i), cols = i === j ? rows : pathCounts(layers, size, j);
    var peak = Math.max.apply(null, rows) * Math.max.apply(null, cols);
    if (!(peak > 0)) return " Effective map: the unit reads padding only.";
    svg("image", { href: paintedImage(size, size, function (a, b) {
      var v = rows[a] * cols[b] / peak, c = colourAt(rgbs, v);
      return [c[0], c[1], c[2], Math.round(255 * 0.85 * Math.sqrt(v))];
    }), x: -0.5, y: -0.5, width: size, height: size, preserveAspectRatio: "none", "class": "dle-erf",
      style: "image-rendering: pixelated" }, g);
    // the field on the photo (clipped to it): its rows and columns, and those no path reaches
    var r = region(rf, i), c = region(rf, j);
    var r0 = Math.max(0, r[0]), r1 = Math.min(size - 1, r[1]), c0 = Math.max(0, c[0]), c1 = Math.min(size - 1, c[1]);
    var h = r1 - r0 + 1, w = c1 - c0 + 1, emptyRows = 0, emptyCols = 0;
    for (var a = r0; a <= r1; a++) if (rows[a] === 0) emptyRows += 1;
    for (var b = c0; b <= c1; b++) if (cols[b] === 0) emptyCols += 1;
    var unread = h * w - (h - emptyRows) * (w - emptyCols);
    var scale = Math.max(1, Math.floor(192 / Math.max(h, w)));
    var zoom = el("div", { "class": "dle-zoom" }, figure);
    el("div", { "class": "dle-caption" }, zoom, "the field alone, enlarged (grey: no path)");
    var z = svg("svg", { width: w * scale, height: h * scale, viewBox: [-0.5, -0.5, w, h].join(" "), role: "img",
      "aria-label": "effective map over the receptive field", "class": "dle-svg dle-erf-zoom" }, zoom);
    svg("image", { href: paintedImage(h, w, function (a, b) {
      var v = rows[r0 + a] * cols[c0 + b] / peak, rgb = v > 0 ? colourAt(rgbs, v) : [220, 220, 220];
      return [rgb[0], rgb[1], rgb[2], 255];
    }), x: -0.5, y: -0.5, width: w, height: h, preserveAspectRatio: "none", style: "image-rendering: pixelated" }, z);
    z.setAttribute("data-unread", String(unread));
    // a field that reaches past the photo's edge is counted on its part inside the photo (a reader's trial:
    // "7 of the 47 rows of its field" read as the 89-px field)
    var clipped = r0 !== r[0] || r1 !== r[1] || c0 !== c[0] || c1 !== c[1];
    var field = clipped ? "of its field inside the photo" : "of its field";
    return " Effective map (every weight 1): the paths from each pixel to the unit; " + (unread ?
      emptyRows + " of the " + h + " rows and " + emptyCols + " of the " + w + " columns " + field +
      " carry none, so " +
      unread + " of its " + h * w + " pixels are never read." : "every pixel " + field + " is read.");
  }

  function mountReceptiveField(root, opts) {
    var size = opts.photo_size;
    var state = { text: opts.stack, row: null, col: null };
    var erfRgbs = parseColours(opts.erf_colours);
    var top = el("div", { "class": "dle-row" }, root);
    var left = el("div", { "class": "dle-controls dle-column" }, top);
    el("span", { "class": "dle-label" }, left, "layers (one per line: conv k=3 s=2 d=1, pool k=2 s=2)");
    var box = el("textarea", { rows: 7, cols: 28, name: "stack", spellcheck: "false", "aria-label": "layer stack" }, left);
    box.value = state.text;
    var rate = slider(left, "last_rate", "rate d of the last conv", 1, 8, 1, function (v) {
      state.text = setLastRate(state.text, v);
      box.value = state.text;
      draw();
    });
    var row = slider(left, "row", "unit row", 0, 0, 0, function (v) { state.row = v; draw(); });
    var col = slider(left, "col", "unit col", 0, 0, 0, function (v) { state.col = v; draw(); });
    var centre = el("button", { type: "button", "class": "dle-button", name: "centre" }, left, "centre unit");
    centre.addEventListener("click", function () { state.row = null; state.col = null; draw(); });
    var effLabel = el("label", { "class": "dle-control" }, left);
    var eff = el("input", { type: "checkbox", name: "effective", checked: "checked" }, effLabel);
    el("span", { "class": "dle-label" }, effLabel, " effective map (every weight 1)");
    eff.addEventListener("change", function () { draw(); });
    box.addEventListener("input", function () { state.text = box.value; draw(); });
    var figure = el("div", { "class": "dle-figure dle-row" }, top);
    var message = messageBox(root);
    var table = el("div", { "class": "dle-table" }, root);

    function draw() {
      var layers, oh;
      try {
        layers = parseLayerStack(state.text);
        oh = stackOutputSize(layers, size);
      } catch (err) {  // the last good drawing stays, faded, while a line is being typed
        root.setAttribute("data-error", err.message);
        box.setAttribute("aria-invalid", "true");
        figure.style.opacity = "0.35";
        message.textContent = "cannot draw this stack: " + err.message;
        return;
      }
      clear(figure);
      clear(table);
      figure.style.opacity = "";
      root.removeAttribute("data-error");
      box.setAttribute("aria-invalid", "false");
      var r = lastRate(layers);
      if (r !== null) rate.setRange(1, Math.max(8, r)), rate.set(r);
      rate.input.disabled = r === null;
      var rf = receptiveField(layers);
      row.setRange(0, oh - 1);
      col.setRange(0, oh - 1);
      var i = state.row === null ? Math.floor((oh - 1) / 2) : Math.min(state.row, oh - 1);
      var j = state.col === null ? Math.floor((oh - 1) / 2) : Math.min(state.col, oh - 1);
      row.set(i);
      col.set(j);
      var rows = region(rf, i), cols = region(rf, j);
      root.setAttribute("data-receptive-field", String(rf.size));
      root.setAttribute("data-output-size", String(oh));
      var scale = Math.max(2, Math.floor(384 / size));
      var g = svg("svg", { width: size * scale, height: size * scale, viewBox: [-0.5, -0.5, size, size].join(" "),
        role: "img", "aria-label": "receptive field on the photograph", "class": "dle-svg dle-photo" }, figure);
      svg("image", { href: opts.photo, x: -0.5, y: -0.5, width: size, height: size, preserveAspectRatio: "none",
        "class": "dle-photo-image" }, g);
      var erfNote = "";
      if (eff.checked) erfNote = drawPathCounts(g, figure, layers, size, rf, i, j, erfRgbs);
      var units = oh * oh;
      if (units <= 4096) {
        var dots = svg("g", { "class": "dle-dots", fill: "black", "fill-opacity": 0.7 }, g);
        var radius = Math.max(0.3, Math.min(0.9, rf.stride / 7));
        for (var a = 0; a < oh; a++) {
          for (var b = 0; b < oh; b++) {
            var ca = region(rf, a), cb = region(rf, b);
            svg("circle", { cx: (cb[0] + cb[1]) / 2, cy: (ca[0] + ca[1]) / 2, r: radius }, dots);
          }
        }
      }
      svg("rect", { x: cols[0] - 0.5, y: rows[0] - 0.5, width: rf.size, height: rf.size, fill: "none",
        stroke: SQUARE, "stroke-width": Math.max(0.8, size / 128), "class": "dle-rf" }, g);
      svg("circle", { cx: (cols[0] + cols[1]) / 2, cy: (rows[0] + rows[1]) / 2, r: Math.max(1.2, size / 80), fill: "red",
        "class": "dle-unit" }, g);
      message.innerHTML = "receptive field <b>" + rf.size + " px</b>, effective stride <b>" + rf.stride +
        "</b>, effective padding " + rf.padding + "; output map " + oh + "×" + oh + " on the " + size + "×" + size +
        " photo; unit (" + i + ", " + j + ") sees rows " + rows[0] + "…" + rows[1] + ", columns " + cols[0] + "…" + cols[1] +
        (units > 4096 ? " (" + units + " units: dots not drawn)" : "") + "." + erfNote;
      var t = el("table", {}, table);
      var head = el("tr", {}, el("thead", {}, t));
      var keys = ["layer", "kernel", "stride", "padding", "dilation", "effective kernel", "receptive field", "effective stride"];
      keys.forEach(function (key) { el("th", {}, head, key); });
      var body = el("tbody", {}, t);
      receptiveFieldTable(layers).forEach(function (rec) {
        var tr = el("tr", {}, body);
        keys.forEach(function (key) { el("td", {}, tr, String(rec[key])); });
      });
    }
    draw();
    return { draw: draw, state: state };
  }

  // ------------------------------------------------------------------ chapter 04: Fig. 4
  function runs(values) {
    var out = [];
    values.forEach(function (v, i) {
      if (out.length && out[out.length - 1].value === v) out[out.length - 1].length += 1;
      else out.push({ value: v, start: i, length: 1 });
    });
    return out;
  }

  function mountBoundary(root, opts) {
    var state = { height: opts.height, width: opts.width, rate: opts.rate, kernel: opts.kernel };
    var colours = opts.colours || {};  // count -> colour, from the package (deeplab_edu.viz.boundary.count_colours)
    var colourOf = function (c) { return colours[c] || "#888"; };
    var controls = el("div", { "class": "dle-controls" }, root);
    slider(controls, "height", "map height", 1, opts.max_size, state.height, function (v) { state.height = v; draw(); });
    slider(controls, "width", "map width", 1, opts.max_size, state.width, function (v) { state.width = v; draw(); });
    slider(controls, "rate", "atrous rate", 1, opts.max_rate, state.rate, function (v) { state.rate = v; draw(); });
    var message = messageBox(root);
    var figure = el("div", { "class": "dle-row" }, root);

    function draw() {
      clear(figure);
      var h = state.height, w = state.width, r = state.rate, k = state.kernel;
      var rowCounts = validTapCounts1d(h, k, r), colCounts = validTapCounts1d(w, k, r);
      var fractions = validWeightFractions(h, w, r, k);
      var cell = Math.max(1, Math.min(12, 330 / Math.max(h, w)));
      var map = svg("svg", { width: w * cell + 2, height: h * cell + 2, viewBox: [-1, -1, w * cell + 2, h * cell + 2].join(" "),
        role: "img", "aria-label": "valid taps per output position", "class": "dle-svg dle-map" }, figure);
      // The count is row_count * col_count: constant on blocks of equal row and column counts.
      runs(rowCounts).forEach(function (ra) {
        runs(colCounts).forEach(function (cb) {
          var c = ra.value * cb.value;
          var block = svg("rect", { x: cb.start * cell, y: ra.start * cell, width: cb.length * cell, height: ra.length * cell,
            fill: colourOf(c), "data-count": c, "data-cells": ra.length * cb.length, "class": "dle-block" }, map);
          svg("title", {}, block, c + " valid tap" + (c > 1 ? "s" : "") + " (" + ra.length * cb.length + " positions)");
        });
      });
      svg("rect", { x: 0, y: 0, width: w * cell, height: h * cell, fill: "none", stroke: "black", "stroke-width": 1 }, map);
      drawCurves(figure, h, w, r, k);
      var legend = el("div", { "class": "dle-legend" }, figure);
      el("div", {}, legend, "valid taps per position:");
      possibleCounts(k).forEach(function (c) {
        var item = el("div", { "class": "dle-legend-item" }, legend);
        el("span", { "class": "dle-swatch", style: "background:" + colourOf(c) }, item);
        el("span", {}, item, c + (c === k * k ? " (all)" : c === 1 ? " (centre only)" : ""));
      });
      var full = fractions[k * k], only = fractions[1];
      root.setAttribute("data-full", String(full));
      root.setAttribute("data-centre-only", String(only));
      message.innerHTML = h + " × " + w + " map, rate " + r + ", " + k + "×" + k + " filter: all " + k * k +
        " taps valid at <b>" + pct(full) + "</b> of positions, only the centre tap at <b>" + pct(only) +
        "</b>; mean share of weights in use " + pct(meanValidFraction(h, w, r, k)) + ". " +
        (r >= Math.max(h, w) ? "At rate ≥ " + Math.max(h, w) + " the filter has degenerated to 1×1 everywhere." : "");
    }

    function drawCurves(parent, h, w, r, k) {
      var maxRate = Math.max(h, w, r);
      var rates = [];
      for (var q = 1; q <= maxRate; q++) rates.push(q);
      var curves = figure4Curves(h, w, rates, k);
      var half = (k + 1) / 2;
      var shown = [1, half * half, k * k].filter(function (c, idx, arr) { return arr.indexOf(c) === idx; });
      var W = 370, H = 262, L = 40, B = 48, T = 22, R = 10;
      var g = svg("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img",
        "aria-label": "DeepLabv3 Figure 4 for this map", "class": "dle-svg dle-curves" }, parent);
      var xOf = function (rate) { return L + (W - L - R) * (maxRate === 1 ? 0 : (rate - 1) / (maxRate - 1)); };
      var yOf = function (f) { return T + (H - T - B) * (1 - f); };
      svg("line", { x1: L, y1: yOf(0), x2: W - R, y2: yOf(0), stroke: "black" }, g);
      svg("line", { x1: L, y1: yOf(0), x2: L, y2: yOf(1), stroke: "black" }, g);
      [0, 0.5, 1].forEach(function (f) {
        svg("text", { x: L - 4, y: yOf(f) + 4, "text-anchor": "end", "class": "dle-axis" }, g, f.toFixed(1));
      });
      [1, maxRate].forEach(function (q) {
        svg("text", { x: xOf(q), y: H - B + 14, "text-anchor": "middle", "class": "dle-axis" }, g, String(q));
      });
      svg("text", { x: (L + W - R) / 2, y: H - B + 14, "text-anchor": "middle", "class": "dle-axis" }, g, "atrous rate");
      svg("text", { x: 4, y: 12, "class": "dle-axis" }, g, "fraction of positions (DeepLabv3 Fig. 4 for this map)");
      shown.forEach(function (c, idx) {
        var pts = rates.map(function (q, n) { return xOf(q).toFixed(2) + "," + yOf(curves[c][n]).toFixed(2); });
        var dash = CURVE_DASHES[idx % CURVE_DASHES.length] || undefined;  // the first curve is solid
        svg("polyline", { points: pts.join(" "), fill: "none", stroke: colourOf(c), "stroke-width": 2,
          "stroke-dasharray": dash, "class": "dle-curve", "data-count": c }, g);
        var key = L + 8 + 110 * idx, keyY = H - 4 - 18;
        svg("line", { x1: key, y1: keyY, x2: key + 18, y2: keyY, stroke: colourOf(c), "stroke-width": 2,
          "stroke-dasharray": dash }, g);
        svg("text", { x: key + 22, y: keyY + 4, "class": "dle-axis" }, g, c + " valid weight" + (c > 1 ? "s" : ""));
      });
      svg("line", { x1: xOf(r), y1: yOf(0), x2: xOf(r), y2: yOf(1), stroke: "grey", "stroke-dasharray": "3,3",
        "class": "dle-marker", "data-rate": r }, g);
    }
    draw();
    return { draw: draw, state: state };
  }

  var MOUNT = { atrous: mountAtrous, receptive_field: mountReceptiveField, boundary: mountBoundary };

  /* Build explorer `name` inside `target` (an element or its id) with the settings `opts`. */
  function mount(target, name, opts) {
    var node = typeof target === "string" ? document.getElementById(target) : target;
    if (!node) throw new Error("deeplab-edu explorer: no element " + target);
    if (!MOUNT[name]) throw new Error("deeplab-edu explorer: unknown explorer " + name);
    clear(node);
    node.classList.add("dle-explorer", "dle-" + name.replace("_", "-"));
    node.setAttribute("data-explorer", name);
    var handle = MOUNT[name](node, opts || {});
    node.setAttribute("data-ready", "true");
    return handle;
  }

  var api = { version: VERSION, core: core, mount: mount };
  if (typeof module === "object" && module.exports) module.exports = api;
  root.DeeplabEduExplorers = api;
})(typeof window !== "undefined" ? window : globalThis);
