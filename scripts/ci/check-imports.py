#!/usr/bin/env python3
"""Fails if two source files of a crate import each other (directly or in a
loop), or if a source module is longer than the limit.

A file imports another when a `use` or an inline path (`crate::a::B`,
`super::B`, `sibling::B`) names an item defined in the other file; re-exports
(`pub use x::B`) are followed to the file that defines the item. Declaring a
child module (`mod x;`) is not an import. Methods spread over several files
(`impl Node` blocks) are not imports either: only names are.

    scripts/ci/check-imports.py            # core, io, sim, bin
    scripts/ci/check-imports.py --max-lines 900
"""
import argparse
import os
import re
import sys

CRATES = {
    "core": "core/src/lib.rs",
    "io": "io/src/lib.rs",
    "sim": "sim/src/lib.rs",
    "bin": "bin/src/main.rs",
}

ITEM_RE = re.compile(
    r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:unsafe\s+)?(?:async\s+)?(?:const\s+)?"
    r"(struct|enum|fn|trait|type|const|static|union|macro_rules!)\s+([A-Za-z_][A-Za-z0-9_]*)",
    re.M,
)
MOD_RE = re.compile(r"^\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;", re.M)
INLINE_MOD_RE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*\{", re.M)
USE_RE = re.compile(r"^\s*(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", re.M)
PATH_RE = re.compile(r"\b((?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def strip_comments(src):
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    src = re.sub(r"//[^\n]*", "", src)
    src = re.sub(r'"(?:\\.|[^"\\])*"', '""', src)
    return src


def expand_use(tree):
    """`a::{b, c::{d as e}}` -> [a::b, a::c::d] (aliases dropped)."""
    tree = re.sub(r"\s+as\s+[A-Za-z_][A-Za-z0-9_]*", "", tree)
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix, t):
        if t.endswith("}") and "{" in t:
            i = t.index("{")
            head, body = t[:i], t[i + 1 : -1]
            depth, start, parts = 0, 0, []
            for j, ch in enumerate(body):
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                elif ch == "," and depth == 0:
                    parts.append(body[start:j])
                    start = j + 1
            parts.append(body[start:])
            for p in parts:
                if p:
                    walk(prefix + head, p)
        else:
            out.append(prefix + t)

    walk("", tree)
    return out


class Module:
    def __init__(self, path, file, crate):
        self.path = path  # tuple of names from the crate root
        self.file = file
        self.crate = crate
        self.children = {}
        self.items = set()
        self.reexports = {}  # name -> full path tuple (resolved lazily)
        self.uses = []  # list of (path tuple) as written, relative
        self.src = ""


def load_crate(crate, root):
    mods = {}

    def load(path, file):
        m = Module(path, file, crate)
        mods[path] = m
        raw = open(file).read()
        src = strip_comments(raw)
        m.src = src
        m.items = {name for _, name in ITEM_RE.findall(src)}
        for name in INLINE_MOD_RE.findall(src):
            m.items.add(name)  # an inline module counts as part of this file
        base = os.path.dirname(file)
        stem = os.path.basename(file)[:-3]
        for name in MOD_RE.findall(src):
            if stem in ("mod", "lib", "main"):
                cand = [os.path.join(base, name + ".rs"), os.path.join(base, name, "mod.rs")]
            else:
                cand = [os.path.join(base, stem, name + ".rs"), os.path.join(base, stem, name, "mod.rs")]
            for c in cand:
                if os.path.exists(c):
                    m.children[name] = path + (name,)
                    load(path + (name,), c)
                    break
        for pub, tree in USE_RE.findall(src):
            for p in expand_use(tree):
                parts = tuple(x for x in p.split("::") if x)
                if not parts:
                    continue
                m.uses.append(parts)
                if pub and parts[-1] not in ("*", "self"):
                    m.reexports[parts[-1]] = parts
        for p in PATH_RE.findall(src):
            m.uses.append(tuple(p.split("::")))
        return m

    load((), root)
    return mods


def absolute(mods, here, parts):
    """Turns a written path into a path from the crate root (or None if external)."""
    cur = list(here)
    i = 0
    if parts[0] == "crate":
        cur, i = [], 1
    elif parts[0] == "self":
        i = 1
    elif parts[0] == "super":
        while i < len(parts) and parts[i] == "super":
            cur = cur[:-1]
            i += 1
    elif parts[0] in mods[tuple(here)].children:
        pass
    elif parts[0] in mods[tuple(here)].items or parts[0] in mods[tuple(here)].reexports:
        return None  # a name of this very file
    else:
        return None  # another crate
    return tuple(cur) + tuple(parts[i:])


def resolve(mods, full, depth=0):
    """The file defining the item a full path names, or None."""
    if depth > 16:
        return None
    mod = ()
    rest = list(full)
    while rest and mod + (rest[0],) in mods:
        mod = mod + (rest.pop(0),)
    m = mods[mod]
    if not rest or rest[0] in ("*", "self"):
        return None  # a whole module: not an item import
    name = rest[0]
    if name in m.items:
        return m.file
    if name in m.reexports:
        target = absolute(mods, mod, m.reexports[name])
        if target is None:
            return None
        return resolve(mods, target + tuple(rest[1:]) if len(rest) > 1 else target, depth + 1)
    return None


def cycles(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
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
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            strong(v)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-lines", type=int, default=900)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    root = os.path.dirname(os.path.abspath(__file__))
    while not os.path.exists(os.path.join(root, "Cargo.lock")):
        root = os.path.dirname(root)
    os.chdir(root)
    failed = False
    files = 0
    for crate, root in CRATES.items():
        mods = load_crate(crate, root)
        graph = {}
        for path, m in mods.items():
            files += 1
            edges = graph.setdefault(m.file, set())
            for parts in m.uses:
                full = absolute(mods, path, parts)
                if full is None:
                    continue
                target = resolve(mods, full)
                if target and target != m.file:
                    edges.add(target)
            n = sum(1 for _ in open(m.file))
            if n > args.max_lines:
                print(f"{m.file}: {n} lines (limit {args.max_lines})")
                failed = True
        for comp in cycles(graph):
            failed = True
            print(f"{crate}: files that import each other: {' <-> '.join(comp)}")
            for a in comp:
                for b in sorted(graph[a]):
                    if b in comp:
                        print(f"    {a} uses {b}")
        if args.verbose:
            for f, e in sorted(graph.items()):
                print(f, "->", sorted(e))
    if failed:
        sys.exit(1)
    print(f"no import loops and no module over {args.max_lines} lines ({files} files in core, io, sim, bin)")


if __name__ == "__main__":
    main()
