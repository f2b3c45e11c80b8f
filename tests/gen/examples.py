#!/usr/bin/env python3
"""examples.py - every documented example command, one per line:

    SOURCE<TAB>BLOCK<TAB>COMMAND

(BLOCK numbers the commands that belong together: a README code block, a man
page's .nf block of a section 5/7 page; every man1 example is its own)
from README.md and HACKING.md (indented code blocks whose first word is a
medpipe program, make, mkdir or a script of examples/), the EXAMPLES section of
every man page (man/man1/*.1: lines starting '$ ', or every line when no line
does; man/man5, man/man7: the .nf blocks of EXAMPLES and DESCRIPTION) and the
usage lines of examples/*.sh (comment lines starting '#   make ' or the
script's own usage).  Continued lines (a trailing backslash, or a next line
starting with '|') are joined.  tests/t/examples.sh runs them.

    examples.py [ROOT]
"""
import glob
import os
import re
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else "."
PROGS = {os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(ROOT, "tools", "*.c"))}
STARTS = PROGS | {"make", "mkdir", "sh", "cd", "MEDPIPE_DEVICE", "mpirun", "examples/demo.sh", "examples/phantom-dataset.sh"}


def first_word(cmd):
    w = cmd.split()[0] if cmd.split() else ""
    return w.split("=")[0] if "=" in w else w


def join(lines):
    """join continuation lines into commands"""
    out = []
    for ln in lines:
        s = ln.rstrip()
        if not s.strip():
            continue
        if out and (out[-1].endswith("\\") or s.lstrip().startswith("|")):
            out[-1] = out[-1].rstrip("\\").rstrip() + " " + s.strip()
        else:
            out.append(s.strip())
    return out


def markdown(path):
    text = open(path).read().split("\n")
    blocks, cur, prev_blank = [], None, True
    for ln in text:
        if ln.startswith("    ") and (cur is not None or prev_blank):
            if cur is None:
                cur = []
            cur.append(ln[4:])
        else:
            if cur is not None and ln.strip():
                blocks.append(cur)
                cur = None
            elif cur is not None:
                cur.append("")
        prev_blank = not ln.strip()
    if cur:
        blocks.append(cur)
    for b in blocks:
        cmds = join(b)
        if cmds and first_word(cmds[0]) in STARTS:
            yield cmds


def unroff(s):
    s = s.replace("\\-", "-").replace("\\e", "\\").replace("\\(aq", "'").replace("\\(dq", '"')
    return re.sub(r"\\f[BIRP]", "", s)


def man(path):
    lines = [unroff(x) for x in open(path).read().split("\n")]
    sec, nf, block = None, False, []
    for ln in lines + [".SH END"]:
        if ln.startswith(".SH"):
            sec = ln[3:].strip().strip('"')
            continue
        if ln.startswith(".nf"):
            nf, block = True, []
            continue
        if ln.startswith(".fi"):
            nf = False
            if sec in ("EXAMPLES", "EXAMPLE", "DESCRIPTION"):
                # "$ " lines (with their continuations); consecutive ones,
                # with no description between them, belong together
                dollar, groups, prev = [], [], False
                for x in block:
                    if x.startswith("$ "):
                        dollar.append(x[2:])
                        if not prev:
                            groups.append([])
                        groups[-1].append(x[2:])
                        prev = True
                    elif dollar and dollar[-1].rstrip().endswith("\\"):
                        dollar.append(x)   # the continuation of a "$ " line
                        groups[-1].append(x)
                    else:
                        prev = False
                if sec == "DESCRIPTION" and not path.endswith(".7"):
                    continue
                cmds = [c for c in (join(dollar) if dollar else join(block)) if first_word(c) in STARTS]
                if path.endswith(".1") and dollar:
                    for g in groups:
                        g = [c for c in join(g) if first_word(c) in STARTS]
                        if g:
                            yield g
                elif path.endswith(".1"):
                    for c in cmds:
                        yield [c]
                elif cmds:
                    yield cmds
            continue
        if nf:
            block.append(ln)


def scripts(path):
    for ln in open(path):
        m = re.match(r"#\s{3,}((make -f|examples/)\S* .*?)(\s+#.*)?$", ln)
        if m:
            yield [m.group(1).strip()]


def main():
    src = []
    for md in ("README.md", "HACKING.md"):
        p = os.path.join(ROOT, md)
        if os.path.exists(p):
            src += [(md, b) for b in markdown(p)]
    for p in sorted(glob.glob(os.path.join(ROOT, "man", "man*", "*.[157]"))):
        src += [(os.path.relpath(p, ROOT), b) for b in man(p)]
    # the usage lines of a script of examples/ run one after another
    for p in sorted(glob.glob(os.path.join(ROOT, "examples", "*.sh"))):
        rel = os.path.relpath(p, ROOT)
        src += [(rel, sum(scripts(p), []))]
    for k, (s, b) in enumerate(src):
        for c in b:
            print("%s\t%d\t%s" % (s, k + 1, c))


main()
