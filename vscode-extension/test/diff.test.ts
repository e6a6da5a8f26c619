import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseUnifiedDiff, pathOfDiff } from '../src/logic/diff';

const DIFF = `--- a/train.py
+++ b/train.py
@@ -1,4 +1,4 @@
 import os
-LR = 0.5
+LR = 0.45
 
 WIDTH = 8
`;

test('parse a unified diff from difflib', () => {
  const parsed = parseUnifiedDiff(DIFF);
  assert.equal(parsed.oldPath, 'train.py');
  assert.equal(parsed.newPath, 'train.py');
  assert.equal(parsed.hunks.length, 1);
  assert.deepEqual(parsed.hunks[0].lines.map((l) => l.kind).join(''), ' -+  ');
  assert.equal(pathOfDiff(DIFF), 'train.py');
});

test('an empty diff names no file', () => {
  assert.deepEqual(parseUnifiedDiff('').hunks, []);
  assert.equal(pathOfDiff(''), '');
});
