#!/usr/bin/env python3
"""Attribute the msync/fsync/fdatasync calls of an strace log to files and phases.

Usage (from e2e/, see docs/benchmarks.md "Issue 17, fifth pass: i17-durable5"):

  DOORSTEP_BENCH_PROFILE=$P strace -f -ttt -T -y \
    -e trace=msync,fsync,fdatasync,mmap,munmap,openat -o $LOG \
    $TEST -test.run '^$' -test.bench '^BenchmarkSDKPushPull$' -test.benchtime 1x
  python3 ../bench/syncs/attribute.py $LOG            # one run
  python3 ../bench/syncs/attribute.py $BEFORE $AFTER  # two, side by side

Phases start at the openat of the CPU profile files write.prof, push.prof
and pull.prof (DOORSTEP_BENCH_PROFILE); "setup" is before write.prof.
msync names an address, not a file: each is matched to the file whose
mapping (mmap with its fd path, strace -y) holds that address.
A file is named by the store directory it lives in (the benchmark's temp
dirs: .../001/auth, .../records, the device dirs) and its kind (.mem is a
memtable's WAL, .vlog a value log, .sst a table, MANIFEST, the directory
itself).
"""
import collections
import re
import sys

line_re = re.compile(r'^(\d+)\s+([\d.]+)\s+(\w+)\((.*)$')
mmap_re = re.compile(r'^(\S+), (\d+), [^,]+, ([^,]+), (\d+)<([^>]*)>, [^)]*\)\s*= (0x[0-9a-f]+)')
munmap_re = re.compile(r'^(0x[0-9a-f]+), (\d+)\)')
msync_re = re.compile(r'^(0x[0-9a-f]+), (\d+), [^)]*\)\s*= (-?\d+).*<([\d.]+)>')
fsync_re = re.compile(r'^(\d+)<([^>]*)>\)\s*= (-?\d+).*<([\d.]+)>')
open_re = re.compile(r'"([^"]+)"')


def kind(path):
    """Store and file kind of a path in a Badger directory."""
    parts = path.rstrip('/').split('/')
    base = parts[-1]
    for ext in ('.mem', '.vlog', '.sst'):
        if base.endswith(ext):
            return '/'.join(parts[-3:-1]), ext[1:]
    if base.startswith('MANIFEST'):
        return '/'.join(parts[-3:-1]), 'manifest'
    if 'KEYREGISTRY' in base:
        return '/'.join(parts[-3:-1]), 'keyregistry'
    return '/'.join(parts[-2:]), 'dir/other'


def role(store):
    """BenchmarkSDKPushPull's directories: the first temp dir (001) is the
    server's data dir (auth and records stores), the second (002) the
    pushing device ann's replica, the third (003) the pulling device bea's."""
    if store.endswith('001/auth') or store == 'auth/DISCARD':
        return 'server auth store'
    if store.endswith('001/records') or store == 'records/DISCARD':
        return 'server records store'
    if store.endswith('/002') or store == '002/DISCARD':
        return 'device ann (writes, pushes)'
    if store.endswith('/003') or store == '003/DISCARD':
        return 'device bea (pulls)'
    return store


def main(log):
    maps = []  # (start, end, path)
    phase = 'setup'
    order = ['setup']
    counts = collections.OrderedDict()
    times = collections.defaultdict(float)
    sizes = collections.defaultdict(set)
    unresolved = collections.Counter()
    pending = {}
    for raw in open(log):
        m = line_re.match(raw)
        if not m:
            # "<... msync resumed>" lines: join with the pending call
            r = re.match(r'^(\d+)\s+[\d.]+\s+<\.\.\. (\w+) resumed>(.*)$', raw)
            if not r or r.group(1) not in pending:
                continue
            call, args = pending.pop(r.group(1))
            args = args + r.group(3)
        else:
            pid, _, call, args = m.groups()
            if args.endswith('<unfinished ...>\n') or '<unfinished ...>' in args:
                pending[pid] = (call, args.split('<unfinished ...>')[0])
                continue
        if call == 'openat':
            o = open_re.search(args)
            if o and o.group(1).endswith('.prof'):
                phase = o.group(1).rsplit('/', 1)[1][:-5]
                order.append(phase)
        elif call == 'mmap':
            mm = mmap_re.match(args)
            if mm and 'MAP_SHARED' in mm.group(3):
                start = int(mm.group(6), 16)
                maps.append((start, start + int(mm.group(2)), mm.group(5)))
        elif call == 'munmap':
            mu = munmap_re.match(args)
            if mu:
                start = int(mu.group(1), 16)
                maps = [x for x in maps if x[0] != start]
        elif call == 'msync':
            ms = msync_re.match(args)
            if not ms:
                continue
            addr, ln = int(ms.group(1), 16), int(ms.group(2))
            path = None
            for s, e, p in reversed(maps):
                if s <= addr < e:
                    path = p
                    break
            if path is None:
                unresolved[(phase, ln)] += 1
                continue
            store, k = kind(path)
            store = role(store)
            key = (phase, 'msync', store, k)
            counts[key] = counts.get(key, 0) + 1
            times[key] += float(ms.group(4))
            sizes[key].add(ln)
        elif call in ('fsync', 'fdatasync'):
            fs = fsync_re.match(args)
            if not fs:
                continue
            store, k = kind(fs.group(2))
            store = role(store)
            key = (phase, call, store, k)
            counts[key] = counts.get(key, 0) + 1
            times[key] += float(fs.group(4))
    return order, counts, times, sizes, unresolved


def table(log):
    order, counts, times, sizes, unresolved = main(log)
    print('| phase | call | store | file | calls | wall s (strace -T) | mapping bytes |')
    print('|---|---|---|---|---:|---:|---|')
    for ph in order:
        for key, n in counts.items():
            if key[0] != ph:
                continue
            sz = ','.join(str(x) for x in sorted(sizes[key])) if sizes[key] else ''
            print(f'| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {n} | {times[key]:.3f} | {sz} |')
    for (ph, ln), n in unresolved.items():
        print(f'| {ph} | msync | (unresolved) | | {n} | | {ln} |')


def compare(before, after):
    """Calls per phase, store and file in two logs, side by side."""
    ob, cb, tb, _, _ = main(before)
    oa, ca, ta, _, _ = main(after)
    keys = list(cb.keys()) + [k for k in ca.keys() if k not in cb]
    print('| phase | store | file (call) | before: calls, wall s | after: calls, wall s |')
    print('|---|---|---|---:|---:|')
    for ph in ob + [p for p in oa if p not in ob]:
        for key in keys:
            if key[0] != ph:
                continue
            b, a = cb.get(key, 0), ca.get(key, 0)
            print(f'| {ph} | {key[2]} | {key[3]} ({key[1]}) | {b}, {tb.get(key, 0):.3f} | {a}, {ta.get(key, 0):.3f} |')


if __name__ == '__main__':
    if len(sys.argv) == 3:
        compare(sys.argv[1], sys.argv[2])
    else:
        table(sys.argv[1])
