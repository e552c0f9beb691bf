#!/usr/bin/env python3
"""No include circles: lists every set of modules that include each other.

A module is a file's stem in its directory, a private header counted with
its module (daemon/http.c, daemon/http.h and daemon/http_priv.h are the
module daemon/http). Module A depends on module B when a file of A has
`#include "x.h"` naming a header of B. A .c including its own header is
the normal case; what STYLE.md forbids ("two files never include each
other") is a loop between modules: A's files including B's headers and
B's including A's, directly or through others. Every such loop in the
tree is printed with the include lines that close it, and the exit status
is 1 when there is one.

Includes across areas are area-qualified: a file of one area (lib,
daemon, worker, meter, cli; a unit test's area is the one it tests)
names another area's header with its directory, `#include
"meter/meter.h"`, so a reader sees where it lives. Each unqualified one
is printed, and the exit status is 1.

    tests/check_includes.py [SOURCE_ROOT]
"""
import os
import re
import sys

SKIP_DIRS = {'.git', 'subprojects', 'node_modules', '__pycache__'}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def sources(root):
    for d, dirs, files in os.walk(root):
        # build directories (meson's, with generated code) are not the tree
        dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS and not x.startswith('build')
                         and not os.path.exists(os.path.join(d, x, 'meson-private')))
        for f in sorted(files):
            if f.endswith(('.c', '.h')):
                yield os.path.relpath(os.path.join(d, f), root)


def module_of(path):
    d, f = os.path.split(path)
    stem = os.path.splitext(f)[0]
    if stem.endswith('_priv'):
        stem = stem[:-len('_priv')]
    return os.path.join(d, stem)


def resolve(name, includer, by_path, by_base):
    """The tree's file that `#include "name"` in includer reads: the
    includer's directory first (the compiler's rule), else the one file of
    that name elsewhere (include_directories). None for system or
    generated headers and for names that several directories hold."""
    here = os.path.normpath(os.path.join(os.path.dirname(includer), name))
    if here in by_path:
        return here
    if '/' in name:
        for p in by_path:
            if p.endswith('/' + name) or p == name:
                return p
        return None
    cands = by_base.get(os.path.basename(name), [])
    return cands[0] if len(cands) == 1 else None


AREAS = ('lib', 'daemon', 'worker', 'meter', 'cli')


def area_of(path):
    parts = path.split('/')
    if parts[0] == 'tests' and len(parts) > 2 and parts[1] == 'unit':
        return parts[2]
    if parts[0] == 'tests' and len(parts) > 1:
        return 'tests/' + parts[1]
    return parts[0]


def unqualified(root):
    """(file, line, name, header) of every include naming another area's
    header without its directory."""
    out = []
    by_base = {}
    for p in sources(root):
        by_base.setdefault(os.path.basename(p), []).append(p)
    for p in sources(root):
        with open(os.path.join(root, p), encoding='utf-8', errors='replace') as fh:
            for n, line in enumerate(fh, 1):
                m = INCLUDE.match(line)
                if not m or '/' in m.group(1):
                    continue
                owners = [h for h in by_base.get(m.group(1), []) if area_of(h) in AREAS]
                if len(owners) == 1 and area_of(owners[0]) != area_of(p) and \
                        not os.path.exists(os.path.join(root, os.path.dirname(p), m.group(1))):
                    out.append((p, n, m.group(1), owners[0]))
    return out


def graph(root):
    files = list(sources(root))
    by_path = set(files)
    by_base = {}
    for p in files:
        by_base.setdefault(os.path.basename(p), []).append(p)
    edges = {}  # module -> {module: [(file, line, header)]}
    for p in files:
        a = module_of(p)
        edges.setdefault(a, {})
        with open(os.path.join(root, p), encoding='utf-8', errors='replace') as fh:
            for n, line in enumerate(fh, 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                h = resolve(m.group(1), p, by_path, by_base)
                if h is None:
                    continue
                b = module_of(h)
                if b != a:
                    edges[a].setdefault(b, []).append((p, n, h))
    return edges


def loops(edges):
    """Strongly connected components of more than one module (Tarjan,
    iterative: the tree's depth is no concern)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, {}))))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, {})))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return sorted(out)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), '..')
    root = os.path.abspath(root)
    edges = graph(root)
    found = loops(edges)
    for comp in found:
        print('include circle: ' + ' <-> '.join(comp))
        members = set(comp)
        for a in comp:
            for b in sorted(edges.get(a, {})):
                if b in members:
                    for f, n, h in edges[a][b]:
                        print(f'  {f}:{n}: includes {h}')
    bad = unqualified(root)
    for f, n, name, h in bad:
        print(f'{f}:{n}: #include "{name}" is {h}: name it "{h}" (another area)')
    if found:
        print(f'{len(found)} include circle(s): move what both sides need into one of them '
              'or a module of its own', file=sys.stderr)
    if bad:
        print(f'{len(bad)} include(s) across areas without the area', file=sys.stderr)
    if found or bad:
        return 1
    print(f'no include circles among {len(edges)} modules; includes across areas name their area')
    return 0


if __name__ == '__main__':
    sys.exit(main())
