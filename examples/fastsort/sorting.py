"""A sort to make faster. EDITABLE: the loop changes this file.

`sort(values)` returns a new list with the values in ascending order, in pure Python (see
program.md for the rules). It is a bottom-up merge sort: the list is cut into runs of
RUN_LENGTH items, each run is sorted by insertion, then runs are merged pairwise until one is
left. RUN_LENGTH is tunable, and any of the code can be rewritten.
"""

RUN_LENGTH = 8  # items per run, sorted by insertion before the merging starts


def _insertion_sort(items, start, end):
    for i in range(start + 1, end):
        value = items[i]
        j = i - 1
        while j >= start and items[j] > value:
            items[j + 1] = items[j]
            j -= 1
        items[j + 1] = value


def _merge(items, lo, mid, hi, out):
    i, j = lo, mid
    while i < mid and j < hi:
        if items[j] < items[i]:
            out.append(items[j])
            j += 1
        else:
            out.append(items[i])
            i += 1
    while i < mid:
        out.append(items[i])
        i += 1
    while j < hi:
        out.append(items[j])
        j += 1


def sort(values):
    items = list(values)
    n = len(items)
    run = max(1, int(RUN_LENGTH))
    for start in range(0, n, run):
        _insertion_sort(items, start, min(start + run, n))
    width = run
    while width < n:
        out = []
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            _merge(items, lo, mid, hi, out)
        items = out
        width *= 2
    return items
