"""Small test programs built on demand (gcc, rustc) into a per-session temp dir."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

C_PROG = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <dlfcn.h>

static inline __attribute__((always_inline)) int leaf(int x) {
    return x * 3 + 1;          /* LEAF_LINE */
}
static inline __attribute__((always_inline)) int middle(int x) {
    return leaf(x) ^ 5;        /* MIDDLE_LINE */
}
__attribute__((noinline)) int outer(int x) {
    return middle(x) + 7;      /* OUTER_LINE */
}
__attribute__((noinline)) void park(void) {
    pause();
}
int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("outer=%p\n", (void *)&outer);
    printf("r=%d\n", outer(argc));
    if (argc > 1) {
        getchar();             /* the test reads our maps first, then lets us dlopen */
        void *h = dlopen(argv[1], RTLD_NOW);
        if (!h) { fprintf(stderr, "%s\n", dlerror()); return 1; }
        void *f = dlsym(h, "lib_func");
        printf("lib_func=%p\n", f);
    }
    fflush(stdout);
    park();
    return 0;
}
"""

LIB_PROG = r"""
int lib_helper(int x) { return x + 1; }
int lib_func(int x) { return lib_helper(x) * 2; }
"""

RUST_PROG = r"""
use std::collections::HashMap;
#[inline(never)]
fn work(n: u64) -> u64 {
    let mut m = HashMap::new();
    for i in 0..n { *m.entry(i % 7).or_insert(0u64) += i; }
    m.values().sum()
}
fn main() {
    let n: u64 = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(10);
    println!("work={:p}", work as fn(u64) -> u64);
    println!("{}", work(n));
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    if std::env::args().nth(2).is_some() {
        std::thread::sleep(std::time::Duration::from_secs(1000));
    }
}
"""


def _run(cmd: list, cwd: Path) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{r.stdout}\n{r.stderr}")


class Builder:
    """Builds each variant once per session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict = {}

    def c(self, name: str, flags: tuple = (), src: str = C_PROG, lib: bool = False) -> Path:
        key = ("c", name)
        if key not in self._cache:
            if shutil.which("gcc") is None:
                pytest.skip("gcc is not installed")
            srcf = self.root / f"{name}.c"
            srcf.write_text(src)
            out = self.root / name
            cmd = ["gcc", *flags, "-o", str(out), str(srcf)]
            if lib:
                cmd[1:1] = ["-shared", "-fPIC"]
            else:
                cmd.append("-ldl")
            _run(cmd, self.root)
            self._cache[key] = out
        return self._cache[key]

    def rust(self, name: str = "rs", flags: tuple = ("-g", "-C", "opt-level=2")) -> Path:
        key = ("rust", name)
        if key not in self._cache:
            rustc = shutil.which("rustc") or os.path.expanduser("~/.cargo/bin/rustc")
            if not os.path.exists(rustc):
                pytest.skip("rustc is not installed")
            srcf = self.root / f"{name}.rs"
            srcf.write_text(RUST_PROG)
            out = self.root / name
            _run([rustc, *flags, "-o", str(out), str(srcf)], self.root)
            self._cache[key] = out
        return self._cache[key]

    def split_debug(self, binary: Path, name: str, debuglink: bool = True) -> tuple:
        """(stripped copy, debug file) of `binary` via objcopy --only-keep-debug."""
        key = ("split", name)
        if key not in self._cache:
            d = self.root / name
            d.mkdir()
            stripped = d / binary.name
            dbg = d / (binary.name + ".debug")
            _run(["objcopy", "--only-keep-debug", str(binary), str(dbg)], d)
            _run(["objcopy", "--strip-debug", "--strip-unneeded", str(binary), str(stripped)], d)
            if debuglink:
                _run(["objcopy", f"--add-gnu-debuglink={dbg.name}", str(stripped)], d)
            self._cache[key] = (stripped, dbg)
        return self._cache[key]


def mini_debuginfo(symbols_from: Path, binary: Path, out: Path) -> Path:
    """`binary` stripped to .dynsym, carrying in .gnu_debugdata an xz-compressed ELF of
    the function symbols of `symbols_from` that its .dynsym lacks: MiniDebugInfo, made
    as the gdb manual's recipe makes it (nm, objcopy, strip, xz)."""
    if shutil.which("xz") is None:
        pytest.skip("xz is not installed")
    d = out.parent
    dyn = subprocess.run(["nm", "-D", "--format=posix", "--defined-only", str(binary)],
                         capture_output=True, text=True, check=True).stdout
    every = subprocess.run(["nm", "--format=posix", "--defined-only", str(symbols_from)],
                           capture_output=True, text=True, check=True).stdout
    exported = {ln.split()[0] for ln in dyn.splitlines() if ln.split()}
    keep = sorted({p[0] for p in (ln.split() for ln in every.splitlines())
                   if len(p) >= 2 and p[1] in "Tt" and p[0] not in exported})
    (d / f"{out.name}.keep").write_text("\n".join(keep) + "\n")
    mini = d / f"{out.name}.mini"
    _run(["objcopy", "--only-keep-debug", str(symbols_from), str(mini) + ".full"], d)
    _run(["objcopy", "-S", "--remove-section", ".gdb_index", "--remove-section", ".comment",
          f"--keep-symbols={out.name}.keep", str(mini) + ".full", str(mini)], d)
    _run(["xz", "--force", "--keep", str(mini)], d)
    _run(["strip", "--strip-all", "-R", ".comment", "-o", str(out), str(binary)], d)
    _run(["objcopy", f"--add-section=.gnu_debugdata={mini}.xz", str(out)], d)
    return out


def nm_address(binary: Path, symbol: str) -> int:
    """The st_value of `symbol` as nm prints it (an oracle independent of our ELF reader)."""
    out = subprocess.run(["nm", str(binary)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == symbol:
            return int(parts[0], 16)
    raise KeyError(symbol)
