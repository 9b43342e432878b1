#!/usr/bin/env python3
"""Import cycles in a Rust crate, at two levels.

1. Between top-level modules of src/ (a folder or a top-level file is one module): the
   layers of ARCHITECTURE.md (http/ui -> domain -> store/crypto -> config) allow none.
2. Between sibling files inside one module (e.g. src/domain/authn.rs and
   src/domain/mfa.rs): each file has one job, so two siblings never need each other.
   A child using its parent's `mod.rs` (`super::X`) is not a cycle: the parent only
   declares and assembles its children.

References read: `crate::a::b` paths (in `use` lines and in code, grouped `use crate::{..}`
included) and `super::x` paths. Comments are ignored. Prints each cycle; exits 1 if any.
Usage: python3 tools/module_cycles.py [src]
"""
import os
import re
import sys

src = sys.argv[1] if len(sys.argv) > 1 else "src"


def strip_comments(text):
    return re.sub(r"//[^\n]*", "", text)


def module_path(rel):
    """src-relative file path -> module path tuple: domain/authn.rs -> (domain, authn)."""
    parts = rel[:-3].split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    if parts in (["lib"], ["main"]):
        return ()
    return tuple(parts)


files = {}
for dp, _, fs in os.walk(src):
    for f in fs:
        if f.endswith(".rs"):
            p = os.path.join(dp, f)
            files[module_path(os.path.relpath(p, src))] = strip_comments(open(p, encoding="utf-8", errors="replace").read())

path_re = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
group_re = re.compile(r"\b(crate|super)((?:::[a-z_][a-z0-9_]*)*)::\{([^;]*?)\}\s*;", re.S)


def refs(mod, text):
    """Module paths (tuples, absolute from the crate root) that `text` refers to."""
    out = set()
    is_folder_mod = any(k[: len(mod)] == mod and len(k) > len(mod) for k in files)

    def absolute(kind, segs):
        if kind == "crate":
            return tuple(segs)
        # `super` from a file is its parent module; from a folder's mod.rs, likewise.
        return mod[:-1] + tuple(segs)

    for kind, rest in path_re.findall(text):
        out.add(absolute(kind, rest.strip(":").split("::")))
    for kind, prefix, body in group_re.findall(text):
        base = prefix.strip(":").split("::") if prefix else []
        for item in re.findall(r"(?:^|[,{\s])([a-z_][a-z0-9_]*)\s*(?:::|,|\}|$|as\b)", body):
            out.add(absolute(kind, base + [item]))
    del is_folder_mod
    return out


def resolve(target):
    """The longest known module that is a prefix of `target`."""
    for n in range(len(target), 0, -1):
        if target[:n] in files:
            return target[:n]
    return None


edges = {m: set() for m in files if m}
for m, text in files.items():
    if not m:
        continue
    for t in refs(m, text):
        r = resolve(t)
        if r and r != m:
            edges[m].add(r)


def scc(nodes, succ):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    for v in nodes:
        if v not in index:
            visit(v)
    return [sorted(c) for c in out if len(c) > 1]


found = 0
# Level 1: top-level modules.
tops = sorted({m[0] for m in edges})
top_edges = {t: set() for t in tops}
for a, bs in edges.items():
    for b in bs:
        if a[0] != b[0]:
            top_edges[a[0]].add(b[0])
for c in scc(tops, top_edges):
    found += 1
    print("cycle between modules:", ", ".join(c), "|",
          "; ".join(f"{a}->{b}" for a in c for b in sorted(top_edges[a]) if b in c))
# Level 2: siblings inside each folder module (children of one parent; references to a
# descendant count as references to the child that holds it; the parent is left out).
parents = {m[:-1] for m in edges if len(m) > 1}
for parent in sorted(parents):
    kids = sorted(m for m in edges if len(m) == len(parent) + 1 and m[: len(parent)] == parent)
    kid_edges = {k: set() for k in kids}
    for a, bs in edges.items():
        if a[: len(parent)] != parent or len(a) <= len(parent):
            continue
        ka = a[: len(parent) + 1]
        for b in bs:
            if b[: len(parent)] == parent and len(b) > len(parent):
                kb = b[: len(parent) + 1]
                if kb != ka:
                    kid_edges[ka].add(kb)
    for c in scc(kids, kid_edges):
        found += 1
        name = lambda k: "/".join(k)
        print("cycle between files:", ", ".join(map(name, c)), "|",
              "; ".join(f"{name(a)}->{name(b)}" for a in c for b in sorted(kid_edges[a]) if b in c))
print(f"modules: {len(edges)}, cycles: {found}")
sys.exit(1 if found else 0)
