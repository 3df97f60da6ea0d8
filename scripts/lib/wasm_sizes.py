#!/usr/bin/env python3
"""Where a WebAssembly module's bytes go: the size of each function body, summed by the crate
its (demangled) name starts with, with the data segments and the rest. Needs a module that
kept its names section (scripts/profile.sh builds one into build-prof/).
  python3 scripts/lib/wasm_sizes.py build-prof/index_bg.wasm [rows, default 25]"""
import re
import sys
from collections import Counter


def leb(buf, i):
    result = shift = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return result, i


def sections(buf):
    i = 8
    while i < len(buf):
        sid = buf[i]
        size, j = leb(buf, i + 1)
        yield sid, buf[j:j + size]
        i = j + size


def crate_of(name):
    # Legacy mangling demangled by wasm-opt/rustc: "<a::b as c::d>::e::h123", "a::b::c::h123".
    name = name.lstrip('<&*')
    name = re.sub(r'^(dyn |impl |mut |const )', '', name)
    head = re.split(r'::|<| as |\[', name, maxsplit=1)[0]
    return head or name


def main():
    path = sys.argv[1]
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    buf = open(path, 'rb').read()
    imported = 0
    bodies = []
    names = {}
    totals = Counter()
    for sid, body in sections(buf):
        totals[sid] += len(body)
        if sid == 2:  # imports: functions among them shift the function index space
            n, i = leb(body, 0)
            for _ in range(n):
                for _ in range(2):
                    ln, i = leb(body, i)
                    i += ln
                kind = body[i]
                i += 1
                if kind == 0:
                    _, i = leb(body, i)
                    imported += 1
                elif kind == 1:
                    i += 1
                    flags, i = leb(body, i)
                    _, i = leb(body, i)
                    if flags & 1:
                        _, i = leb(body, i)
                elif kind == 2:
                    flags, i = leb(body, i)
                    _, i = leb(body, i)
                    if flags & 1:
                        _, i = leb(body, i)
                elif kind == 3:
                    i += 2
                elif kind == 4:
                    i += 1
                    _, i = leb(body, i)
        elif sid == 10:
            n, i = leb(body, 0)
            for _ in range(n):
                size, j = leb(body, i)
                bodies.append(size)
                i = j + size
        elif sid == 0:
            ln, i = leb(body, 0)
            if body[i:i + ln] != b'name':
                continue
            i += ln
            while i < len(body):
                sub = body[i]
                size, j = leb(body, i + 1)
                if sub == 1:
                    n, k = leb(body, j)
                    for _ in range(n):
                        idx, k = leb(body, k)
                        ln2, k = leb(body, k)
                        names[idx] = body[k:k + ln2].decode('utf-8', 'replace')
                        k += ln2
                i = j + size
    by_crate = Counter()
    for n, size in enumerate(bodies):
        by_crate[crate_of(names.get(n + imported, '(unnamed)'))] += size
    code = sum(bodies)
    print(f'{path}: {len(buf)} bytes; code {code} ({len(bodies)} functions), data {totals[11]}, '
          f'names {totals[0]} (custom sections)')
    print('\n| crate (by function name) | code bytes | share of code |\n|---|---:|---:|')
    for crate, size in by_crate.most_common(rows):
        print(f'| {crate} | {size} | {100 * size / code:.1f}% |')


main()
