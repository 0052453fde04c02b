#!/usr/bin/python3
"""Compare a regress file's output on a distributed quota with its one-node
expected output, allowing only the reservation ids to differ.

    same_but_ids.py EXPECTED ACTUAL

On Citus a reservation id carries the group of the node that made it and
the bucket of its team's hash above its 44 low bits (quota._cluster_id), so
an id made there is a number of 2^44 or more where one node has the plain
sequence.  Only numbers where a reservation id stands may differ: the cells
of psql result columns named in ID_COLUMNS, and the N of "reservation N" in
any other line.  There an id of 2^44 or more may stand for the expected
number, provided the renaming is one to one over the whole file and complete: a hold renamed in one place is
renamed everywhere it appears (the same hold is the same id everywhere, and
two holds never share one).  Everything else must be equal, but for psql's
padding of table cells and the width of its rules, which follow the widest
value.  Exit 0 when the outputs match; otherwise print the first difference
and exit 1.
"""
import os
import re
import sys

NODE_ID = 1 << 44
ID_COLUMNS = {"id", "reservation", "origin"}
RULE = re.compile(r"-+(\+-+)*")
IN_TEXT = re.compile(r"(reservation )(\d+)")


def compare(expected, actual):
    """Pairs (expected, actual) of the id positions, or the line number and reason of a difference."""
    pairs = []
    columns = None  # the header of the table being read, or None outside a table
    for number, (want, got) in enumerate(zip(expected, actual), start=1):
        following = expected[number] if number < len(expected) else ""
        if RULE.fullmatch(want):
            if not RULE.fullmatch(got) or want.count("+") != got.count("+"):
                return number, "a table rule differs"
            continue
        if RULE.fullmatch(following):  # a header: its cells name the columns
            columns = [c.strip() for c in want.split("|")]
            if [c.strip() for c in got.split("|")] != columns:
                return number, "a table header differs"
            continue
        if columns is not None and want.count("|") == len(columns) - 1:
            cells = [c.strip() for c in want.split("|")], [c.strip() for c in got.split("|")]
            if len(cells[1]) != len(columns):
                return number, "a table row differs"
            for name, w, g in zip(columns, *cells):
                if name in ID_COLUMNS and w.isdigit() and g.isdigit():
                    pairs.append((number, int(w), int(g)))
                elif w != g:
                    return number, "column %s differs" % name
            continue
        columns = None
        if IN_TEXT.sub(r"\1#", want) != IN_TEXT.sub(r"\1#", got):
            return number, "the text differs"
        pairs += [(number, int(w[1]), int(g[1])) for w, g in zip(IN_TEXT.findall(want), IN_TEXT.findall(got))]
    if len(expected) != len(actual):
        return min(len(expected), len(actual)) + 1, "%d lines, expected %d" % (len(actual), len(expected))
    return pairs


def main():
    expected_path, actual_path = sys.argv[1:3]
    expected = open(expected_path, encoding="utf-8").read().splitlines()
    actual = open(actual_path, encoding="utf-8").read().splitlines()
    found = compare(expected, actual)
    if isinstance(found, tuple):
        number, reason = found
        print("%s:%d differs beyond reservation ids (%s)\n  expected: %s\n  actual:   %s"
              % (actual_path, number, reason, expected[number - 1] if number <= len(expected) else "(end)",
                 actual[number - 1] if number <= len(actual) else "(end)"))
        return 1
    forward, backward = {}, {}
    for _, w, g in found:
        if g >= NODE_ID:
            forward.setdefault(g, w)
            backward.setdefault(w, g)
    for number, w, g in found:
        renamed = g >= NODE_ID
        if (renamed and (forward[g] != w or backward[w] != g)) or (not renamed and (g != w or w in backward)):
            print("%s:%d: reservation id %d where the expected output has %d: not one renaming over the file"
                  % (actual_path, number, g, w))
            return 1
    print("%s: as expected, %d reservation ids renamed (%d holds)"
          % (os.path.basename(actual_path), sum(1 for _, w, g in found if g != w), len(forward)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
