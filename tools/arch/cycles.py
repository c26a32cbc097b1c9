#!/usr/bin/env python3
"""Import cycles among the top-level modules of each crate (issue 12's acceptance check).

For every crate in the workspace (a folder with Cargo.toml and src/lib.rs or src/main.rs), the
top-level modules are the files and folders directly under src/. Module A depends on module B
when a file of A names `crate::B` (in a `use` or a path) or, for nested files, `super::...`
reaching B. The script prints each crate's strongly connected components of size > 1 (the
cycles) and the files outside the CLI that import it (`crate::cli` from any other module, or
`host::cli` from any file but the binary's `main.rs`), and exits 1 when either exists.

    python3 tools/arch/cycles.py            # from the repository root
    python3 tools/arch/cycles.py --dot      # also print the module graph in Graphviz dot
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CRATE_REF = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
USE_GROUP = re.compile(r"\buse\s+crate::\{([^}]*)\}", re.S)


def crates():
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in ("target", ".git", "node_modules")]
        if "Cargo.toml" in filenames and os.path.isdir(os.path.join(dirpath, "src")):
            yield dirpath


def top_modules(src):
    mods = set()
    for name in os.listdir(src):
        if name.endswith(".rs") and name not in ("lib.rs", "main.rs"):
            mods.add(name[:-3])
        elif os.path.isdir(os.path.join(src, name)):
            mods.add(name)
    return mods


def module_of(src, path):
    rel = os.path.relpath(path, src)
    head = rel.split(os.sep)[0]
    return head[:-3] if head.endswith(".rs") else head


def graph(src):
    mods = top_modules(src)
    edges = {m: set() for m in mods}
    for dirpath, _, filenames in os.walk(src):
        for f in filenames:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            me = module_of(src, path)
            if me not in mods:
                continue
            text = open(path, encoding="utf-8").read()
            # Strip comments (doc links name modules without depending on them).
            text = re.sub(r"//[^\n]*", "", text)
            names = set(CRATE_REF.findall(text))
            for group in USE_GROUP.findall(text):
                names.update(re.findall(r"\b([a-z_][a-z0-9_]*)\b", group.split("::")[0] if "::" not in group else group))
            for n in names:
                if n in mods and n != me:
                    edges[me].add(n)
    return edges


HOST_CLI = re.compile(r"\bhost::cli\b")


def outside_cli_users():
    """Files of the repository other than host/src/main.rs and host/src/cli.rs that name
    `host::cli` (the binary's command line, seen from another crate, a test or an example)."""
    out = []
    allowed = (os.path.join("host", "src", "main.rs"), os.path.join("host", "src", "cli.rs"))
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in ("target", ".git")]
        for f in filenames:
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, ROOT)
            if not f.endswith(".rs") or rel in allowed:
                continue
            text = re.sub(r"//[^\n]*", "", open(path, encoding="utf-8").read())
            if HOST_CLI.search(text):
                out.append(rel)
    return out


def sccs(edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
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
            out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    dot = "--dot" in sys.argv
    bad = False
    for c in sorted(crates()):
        src = os.path.join(c, "src")
        edges = graph(src)
        name = os.path.relpath(c, ROOT)
        cycles = [s for s in sccs(edges) if len(s) > 1]
        cli_users = sorted(m for m, e in edges.items() if "cli" in e)
        status = "ok" if not cycles and not cli_users else ("CYCLE" if cycles else "CLI IMPORTED")
        print(f"{name}: {len(edges)} top-level modules, {status}")
        for s in cycles:
            bad = True
            print(f"  cycle of {len(s)}: {', '.join(s)}")
        if cli_users:
            bad = True
            print(f"  importing the CLI (only main.rs may): {', '.join(cli_users)}")
        if dot:
            print(f"  digraph \"{name}\" {{")
            for m in sorted(edges):
                for n in sorted(edges[m]):
                    print(f"    \"{m}\" -> \"{n}\";")
            print("  }")
    users = outside_cli_users()
    if users:
        bad = True
        print(f"files importing host::cli (only host/src/main.rs may): {', '.join(users)}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
