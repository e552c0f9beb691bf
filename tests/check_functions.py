#!/usr/bin/env python3
"""No function longer than a screen or two: lists every C function of the
tree over MAX lines (150, STYLE.md), counted from the first line of its
signature to its closing brace.

The tree's functions are written as STYLE.md shows: the signature at the
start of a line, the opening and closing braces alone in column 0. Tables
(initializers: `... = {`), struct and enum bodies are not functions; code
generated in the build directory is not the tree. Exit status 1 when a
function is too long.

    tests/check_functions.py [SOURCE_ROOT] [MAX]
"""
import os
import re
import sys

from check_includes import sources

NAME = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*\(')


def functions(path):
    """(name, first line, length) of each function definition in path."""
    with open(path, encoding='utf-8', errors='replace') as fh:
        lines = fh.read().split('\n')
    out = []
    i = 0
    while i < len(lines):
        if lines[i].rstrip() != '{':
            i += 1
            continue
        # the signature: the lines above, back to a blank line, a comment's
        # end, a preprocessor line or the end of the previous definition
        j = i - 1
        while j >= 0 and lines[j].strip() != '' and not lines[j].startswith(('}', '#')) \
                and not lines[j].rstrip().endswith(('*/', ';')):
            j -= 1
        head = ' '.join(lines[j + 1:i])
        end = i + 1
        while end < len(lines) and not lines[end].startswith('}'):
            end += 1
        m = NAME.search(head)
        if m and '=' not in head.split('(')[0] and not head.lstrip().startswith(('struct', 'enum', 'union', 'typedef')):
            out.append((m.group(1), j + 2, end - j))
        i = end + 1
    return out


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), '..'))
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 150
    long_ones = []
    n = 0
    for rel in sources(root):
        if not rel.endswith('.c'):
            continue
        for name, line, length in functions(os.path.join(root, rel)):
            n += 1
            if length > limit:
                long_ones.append((rel, line, name, length))
    for rel, line, name, length in sorted(long_ones):
        print(f'{rel}:{line}: {name}: {length} lines (at most {limit}): split it along its phases')
    if long_ones:
        print(f'{len(long_ones)} function(s) over {limit} lines', file=sys.stderr)
        return 1
    print(f'no function over {limit} lines among {n}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
