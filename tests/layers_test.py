#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The engine's layer rules, checked from the sources (issue 19).

1. Every engine source lives in a layer folder engine/src/<layer>/, and its
   #include "..." lines reach only its own layer, lower layers and the public
   headers in engine/include (the order is LAYERS below; docs/ARCHITECTURE.md);
   no header of the engine includes itself round a cycle; no .c file
   declares a non-static function (its header does).
2. Nothing under cli/, plugin/, host/, bench/ or tests/ includes an
   engine/src header, except the (file, header) pairs in
   tests/layers_allowlist.txt, each with its reason (the list is empty: keep
   it so). An allowlist entry that no longer matches an include fails too,
   so the list can only shrink.
3. The test-only header (engine/test/) is included by files under tests/
   only; the public headers (engine/include) include only each other.
4. Given the built engine library, the calls between its files (from the
   objects' defined and undefined symbols, `nm`) never go to a higher
   layer and form no cycle.
5. Above the engine: host/ (the core the plug-in and the CLI share) includes
   no GIMP, GTK, GLib, Pango or cairo header and nothing from plugin/ or
   cli/; cli/ includes nothing from plugin/, plugin/ nothing from cli/.

Usage: layers_test.py [SOURCE_ROOT [ENGINE_LIBRARY]]  (default root:
$DL_SOURCE_ROOT or this file's parent folder; without the library, rule 4
is not checked). Exit 0 when every rule holds, 1 otherwise.
"""
import collections
import os
import re
import shutil
import subprocess
import sys

# Lowest first. A layer may include its own folder and every folder before it.
LAYERS = ["base", "runtime", "formats", "infer", "eval", "train"]
OUTSIDE = ["cli", "plugin", "host", "bench", "tests"]
SOURCE_EXT = (".c", ".h")
INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
SYSTEM_INCLUDE_RE = re.compile(r'^\s*#\s*include\s+<([^>]+)>', re.M)
# Front-end libraries host/ must not include (by the header's first path part
# or file name): GIMP, GEGL/babl, GTK/GDK, GLib/GIO/GObject, Pango, cairo.
FRONT_END_HEADERS = re.compile(r'^(libgimp\w*|gegl|babl|gtk|gdk\w*|glib|gio|gobject|pango\w*|cairo)\b')
# Which top folder may include headers from which (rule 3).
FORBIDDEN_FOLDERS = {"host": {"plugin", "cli"}, "cli": {"plugin"}, "plugin": {"cli"}}


def includes(path, regex=INCLUDE_RE):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    for m in regex.finditer(text):
        yield text.count("\n", 0, m.start()) + 1, m.group(1)


def front_ends(root, errors, allowed):
    """Rule 3: host/, plugin/ and cli/ keep their places above the engine."""
    rel = lambda p: os.path.relpath(p, root)
    n = 0
    for top in FORBIDDEN_FOLDERS:
        for path in sources(os.path.join(root, top)):
            n += 1
            if top == "host":
                for line, name in includes(path, SYSTEM_INCLUDE_RE):
                    if FRONT_END_HEADERS.match(name):
                        errors.append(f"{rel(path)}:{line}: #include <{name}>: host/ is shared by the plug-in and "
                                      f"the CLI and uses no GIMP, GTK, GLib, Pango or cairo header")
            for line, name in includes(path):
                target = resolve(root, path, name, ["host", "engine/include", "engine/src", "plugin", "cli"])
                if target is None:
                    continue
                folder = os.path.relpath(target, root).split(os.sep)[0]
                if folder in FORBIDDEN_FOLDERS[top]:
                    errors.append(f"{rel(path)}:{line}: #include \"{name}\": {top}/ may not include {folder}/ "
                                  f"({rel(target)})")
    for (f, header), line in allowed.items():
        if f.split("/")[0] in ("plugin", "host"):
            errors.append(f"tests/layers_allowlist.txt:{line}: {f}: plugin/ and host/ use engine/include only "
                          f"(no exceptions)")
    return n


def sources(top):
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in ("corpus", "data"))
        for name in sorted(filenames):
            if name.endswith(SOURCE_EXT):
                yield os.path.join(dirpath, name)


def resolve(root, path, name, search):
    """Where the preprocessor finds "name": the including file's folder first,
    then the -I folders in order. None if nowhere in the tree."""
    for d in [os.path.dirname(path)] + [os.path.join(root, s) for s in search]:
        cand = os.path.normpath(os.path.join(d, name))
        if os.path.isfile(cand):
            return cand
    return None


def pasted_prototypes(path):
    """File-scope declarations of non-static functions in a .c file: the
    prototype belongs in the layer's header (yields line, text)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    # blank out comments, strings and preprocessor lines, keeping line numbers
    keep_lines = lambda m: re.sub(r"[^\n]", " ", m.group(0))
    text = re.sub(r"/\*.*?\*/|//[^\n]*|\"(\\.|[^\"\\\n])*\"|'(\\.|[^'\\\n])*'", keep_lines, text, flags=re.S)
    text = re.sub(r"^[ \t]*#[^\n]*(\\\n[^\n]*)*", keep_lines, text, flags=re.M)
    depth, start = 0, 0
    for i, ch in enumerate(text):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            start = i + 1
        elif depth == 0 and ch == ";":
            stmt = " ".join(text[start:i].split())
            head = stmt.split("(")[0]
            if "(" in stmt and not re.match(r"(static|typedef|extern|_Static_assert)\b", stmt) and "=" not in head:
                seg = text[start:i]
                yield text.count("\n", 0, start + len(seg) - len(seg.lstrip())) + 1, stmt
            start = i + 1


def call_graph(lib):
    """{file: set of files it calls} of the engine's objects in lib, files
    named "<layer>/<name>.c" (meson names a member src_<layer>_<name>.c.o)."""
    out = subprocess.run(["nm", "-A", lib], capture_output=True, text=True, check=True).stdout
    defined, used = {}, collections.defaultdict(set)
    for line in out.splitlines():
        loc, _, sym = line.rpartition(" ")
        member = loc.split(":")[-2] if loc.count(":") >= 2 else loc.split(":")[0]
        m = re.match(r"src_([a-z]+)_(.+)\.c\.o$", os.path.basename(member))
        if not m:
            continue
        f = m.group(1) + "/" + m.group(2) + ".c"
        kind = loc.split()[-1] if loc.split() else ""
        if kind == "U":
            used[f].add(sym)
        elif kind in ("T", "D", "R", "B", "C"):
            defined[sym] = f
        used.setdefault(f, set())
    return {f: {defined[s] for s in syms if s in defined and defined[s] != f} for f, syms in used.items()}


def cycles(graph):
    """Strongly connected components of more than one file (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.environ.get("DL_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..")))
    src = os.path.join(root, "engine", "src")
    inc = os.path.join(root, "engine", "include")
    test_inc = os.path.join(root, "engine", "test")
    errors = []
    rel = lambda p: os.path.relpath(p, root)

    # 1. inside the engine
    n_engine = 0
    inc_graph = collections.defaultdict(set)  # include cycles, any folder of the engine
    for path in list(sources(src)) + list(sources(inc)) + list(sources(test_inc)):
        for _, name in includes(path):
            target = resolve(root, path, name, ["engine/include", "engine/src", "engine/test"])
            if target is not None:
                inc_graph[rel(path)].add(rel(target))
    for comp in cycles(inc_graph):
        errors.append("include cycle between " + ", ".join(comp))
    for path in sources(src):
        n_engine += 1
        parts = os.path.relpath(path, src).split(os.sep)
        if len(parts) != 2 or parts[0] not in LAYERS:
            errors.append(f"{rel(path)}: not in a layer folder engine/src/<{'|'.join(LAYERS)}>/")
            continue
        rank = LAYERS.index(parts[0])
        if path.endswith(".c"):
            for line, stmt in pasted_prototypes(path):
                errors.append(f"{rel(path)}:{line}: a function declared in a .c file ({stmt[:60]}...): "
                              f"declare it once, in its layer's header")
        for line, name in includes(path):
            target = resolve(root, path, name, ["engine/include", "engine/src"])
            if target is None:
                # system-style headers found elsewhere (cJSON, GLib) are not ours
                if os.path.basename(name) in {os.path.basename(p) for p in sources(src)}:
                    errors.append(f"{rel(path)}:{line}: #include \"{name}\" names an engine header by a path "
                                  f"that does not resolve; write it as \"<layer>/<file>\"")
                continue
            if os.path.dirname(target) == inc:
                continue
            if not target.startswith(src + os.sep):
                errors.append(f"{rel(path)}:{line}: #include \"{name}\" leaves the engine ({rel(target)})")
                continue
            tparts = os.path.relpath(target, src).split(os.sep)
            if len(tparts) != 2 or tparts[0] not in LAYERS:
                errors.append(f"{rel(path)}:{line}: #include \"{name}\" is not in a layer folder")
                continue
            trank = LAYERS.index(tparts[0])
            if trank > rank:
                errors.append(f"{rel(path)}:{line}: #include \"{name}\": layer '{parts[0]}' may not include "
                              f"the higher layer '{tparts[0]}' (order: {' < '.join(LAYERS)})")

    # the public headers: only each other (an installed header cannot reach src/)
    for path in sources(inc):
        for line, name in includes(path):
            target = resolve(root, path, name, ["engine/include"])
            if target is None or os.path.dirname(target) != inc:
                errors.append(f"{rel(path)}:{line}: #include \"{name}\": a public header includes only "
                              f"public headers (engine/include)")

    # 2. outside the engine
    allow_path = os.path.join(root, "tests", "layers_allowlist.txt")
    allowed = {}
    with open(allow_path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split(None, 2)
            if len(fields) < 3 or not fields[2].strip():
                errors.append(f"tests/layers_allowlist.txt:{n}: want 'FILE HEADER REASON', got: {line}")
                continue
            allowed[(fields[0], fields[1])] = n
    used = set()
    engine_headers = {os.path.basename(p) for p in sources(src) if p.endswith(".h")}
    n_outside = 0
    for top in OUTSIDE:
        for path in sources(os.path.join(root, top)):
            n_outside += 1
            for line, name in includes(path):
                local = os.path.normpath(os.path.join(os.path.dirname(path), name))
                if os.path.isfile(local) and not local.startswith(src + os.sep) and \
                        not local.startswith(test_inc + os.sep):
                    continue
                # 3. the test-only door: tests/ only
                door = resolve(root, path, name, ["engine/test"])
                if door is not None and door.startswith(test_inc + os.sep):
                    if top != "tests":
                        errors.append(f"{rel(path)}:{line}: #include \"{name}\" is the test-only header "
                                      f"({rel(door)}); only tests/ may include it, use the public headers")
                    continue
                target = resolve(root, path, name, ["engine/src"])
                if target is not None and target.startswith(src + os.sep):
                    header = os.path.relpath(target, src)
                elif os.path.basename(name) in engine_headers:
                    header = name  # an engine header by another path
                else:
                    continue
                key = (rel(path), header)
                if key in allowed:
                    used.add(key)
                else:
                    errors.append(f"{rel(path)}:{line}: #include \"{name}\" reaches into the engine's internals "
                                  f"(engine/src/{header}); use the public headers (dermlens.h, dermlens_io.h, "
                                  f"dermlens_eval.h, dermlens_profile.h), or in tests/ dermlens_test.h")
    for key, n in sorted(allowed.items(), key=lambda kv: kv[1]):
        if key not in used:
            errors.append(f"tests/layers_allowlist.txt:{n}: {key[0]} no longer includes {key[1]}: "
                          f"remove the entry")

    n_front = front_ends(root, errors, allowed)
    # 4. calls, from the built library
    lib = sys.argv[2] if len(sys.argv) > 2 else None
    n_calls = None
    if lib and shutil.which("nm"):
        graph = call_graph(lib)
        n_calls = sum(len(v) for v in graph.values())
        for a in sorted(graph):
            for b in sorted(graph[a]):
                la, lb = a.split("/")[0], b.split("/")[0]
                if la in LAYERS and lb in LAYERS and LAYERS.index(lb) > LAYERS.index(la):
                    errors.append(f"engine/src/{a} calls into engine/src/{b}: layer '{la}' may not call the "
                                  f"higher layer '{lb}'")
        for comp in cycles(graph):
            errors.append("call cycle between " + ", ".join("engine/src/" + f for f in comp))
    elif lib:
        print("layers: nm not found, calls not checked")

    for e in errors:
        print("FAIL " + e)
    print(f"layers: {n_engine} engine files in {len(LAYERS)} layers, {n_outside} files outside, "
          f"{len(allowed)} allowlisted internal includes, {n_front} host/plugin/cli files" +
          (f", {n_calls} calls between engine files" if n_calls is not None else "") +
          ": " + ("FAILED" if errors else "ok"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
