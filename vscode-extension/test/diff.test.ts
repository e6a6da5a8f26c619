import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyLocated, changesOf, locateChanges, marksFor, parseUnifiedDiff, pathOfDiff } from '../src/logic/diff';

const OLD = ['import os', 'LR = 0.5', '', 'WIDTH = 8', 'score = (LR - 0.3) ** 2', 'print("---")', ''].join('\n');

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

test('a one-line change: tinted line, ghost text with the new line, lens above it', () => {
  const changes = changesOf(parseUnifiedDiff(DIFF));
  assert.equal(changes.length, 1);
  assert.deepEqual(changes[0].removed, ['LR = 0.5']);
  assert.deepEqual(changes[0].added, ['LR = 0.45']);
  const { located, unplaced } = locateChanges(OLD, changes);
  assert.equal(unplaced.length, 0);
  assert.equal(located[0].line, 1);
  const marks = marksFor(located[0], 7);
  assert.deepEqual(marks.removedLines, [1]);
  assert.deepEqual(marks.ghosts, [{ line: 1, text: '→ LR = 0.45' }]);
  assert.equal(marks.anchorLine, 1);
  assert.equal(applyLocated(OLD, located, 0), OLD.replace('LR = 0.5', 'LR = 0.45'));
});

test('changes are found by content when the user has moved them', () => {
  const moved = ['# a comment the user added', '# and another', OLD].join('\n');
  const { located } = locateChanges(moved, changesOf(parseUnifiedDiff(DIFF)));
  assert.equal(located[0].line, 3);
});

test('a change whose lines are gone is unplaced, not drawn at a wrong line', () => {
  const edited = OLD.replace('LR = 0.5', 'LR = 0.3');
  const { located, unplaced } = locateChanges(edited, changesOf(parseUnifiedDiff(DIFF)));
  assert.equal(located.length, 0);
  assert.equal(unplaced.length, 1);
  assert.equal(applyLocated(edited, located, unplaced.length), null);
});

test('several changes, insertions and removals', () => {
  const diff = `--- a/train.py
+++ b/train.py
@@ -1,6 +1,7 @@
 import os
-LR = 0.5
+LR = 0.4
+MOMENTUM = 0.9
 
-WIDTH = 8
 score = (LR - 0.3) ** 2
 print("---")
+print("done")
`;
  const changes = changesOf(parseUnifiedDiff(diff));
  assert.equal(changes.length, 3);
  const { located, unplaced } = locateChanges(OLD, changes);
  assert.equal(unplaced.length, 0);
  assert.deepEqual(located.map((l) => l.line), [1, 3, 6]);
  const first = marksFor(located[0], 7);
  assert.deepEqual(first.ghosts, [{ line: 1, text: '→ LR = 0.4  (+1 more line)' }]);
  const second = marksFor(located[1], 7);
  assert.deepEqual(second.removedLines, [3]);
  assert.deepEqual(second.ghosts, [{ line: 3, text: '✗ removed' }]);
  const third = marksFor(located[2], 7);
  assert.deepEqual(third.removedLines, []);
  assert.deepEqual(third.ghosts, [{ line: 5, text: '+ print("done")' }]);
  assert.equal(
    applyLocated(OLD, located, 0),
    ['import os', 'LR = 0.4', 'MOMENTUM = 0.9', '', 'score = (LR - 0.3) ** 2', 'print("---")', 'print("done")', ''].join('\n'),
  );
});

test('an empty diff has nothing to draw', () => {
  assert.deepEqual(changesOf(parseUnifiedDiff('')), []);
});
