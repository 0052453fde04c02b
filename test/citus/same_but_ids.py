#!/usr/bin/python3
"""Compare a regress file's output on a distributed quota with its one-node
expected output, allowing only the reservation ids to differ.

    same_but_ids.py EXPECTED ACTUAL

On Citus a reservation id carries the group of the node that made it in its
top 16 bits (quota._cluster_id), so an id made on a worker is a number of
2^48 or more where one node has the plain sequence.  Every line must match
its expected line, except that such an id may stand where the expected
output has another number, provided the renaming is one-to-one over the
whole file (the same hold is the same id everywhere, and two holds never
share one).  A column as wide as the id changes psql's padding and rules,
so runs of spaces and of '-' count as one.  Exit 0 when the outputs match;
otherwise print the first difference and exit 1.
"""
import os
import re
import sys

NODE_ID = 1 << 48
NUMBER = re.compile(r"\d+")
SPACES = re.compile(r" +")
RULE = re.compile(r"-{2,}")


def shape(line):
    """The line's text outside its numbers (padding and rules collapsed), and its numbers."""
    text = RULE.sub("-", SPACES.sub(" ", NUMBER.sub("#", line))).strip()
    return text, [int(n) for n in NUMBER.findall(line)]


def main():
    expected_path, actual_path = sys.argv[1:3]
    expected = open(expected_path, encoding="utf-8").read().splitlines()
    actual = open(actual_path, encoding="utf-8").read().splitlines()
    forward, backward, renamed = {}, {}, 0
    for number, (want, got) in enumerate(zip(expected, actual), start=1):
        if want == got:
            continue
        want_text, want_numbers = shape(want)
        got_text, got_numbers = shape(got)
        ok = want_text == got_text and len(want_numbers) == len(got_numbers)
        for w, g in zip(want_numbers, got_numbers) if ok else ():
            if w == g:
                continue
            if g < NODE_ID or forward.setdefault(g, w) != w or backward.setdefault(w, g) != g:
                ok = False
                break
            renamed += 1
        if not ok:
            print("%s:%d differs beyond reservation ids\n  expected: %s\n  actual:   %s"
                  % (actual_path, number, want, got))
            return 1
    if len(expected) != len(actual):
        print("%s: %d lines, expected %d" % (actual_path, len(actual), len(expected)))
        return 1
    print("%s: as expected, %d reservation ids renamed (%d holds)" % (os.path.basename(actual_path), renamed,
                                                                  len(forward)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
