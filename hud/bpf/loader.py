"""Loading programs: resolve map relocations and BTF names, load, and own every fd.

`Program` is one loaded program. `Loader` owns everything of one run (maps, programs,
links, rings) and closes it all in reverse order of creation, so links go before the
programs they run and programs before their maps. Nothing is ever pinned: when the
process dies, the kernel frees every object, which is what keeps hud leak-free even on
SIGKILL.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Optional, Union

from hud.bpf import links as _links
from hud.bpf.maps import Map
from hud.errors import Unsupported, UsageError
from hud.linux import bpf, btf
from hud.linux.closing import Closing, close_fd
from kernel import isa
from kernel.abi import MapSpec
from kernel.asm import Image
from kernel.isa import Insn


class Program(Closing):
    """A loaded BPF program (a context manager). A rejected program raises
    hud.errors.ProgramRejected whose `log` is the verifier's text."""

    def __init__(self, image: Image, maps: Optional[Mapping[str, Union[Map, int]]] = None,
                 log_level: int = 0) -> None:
        maps = maps or {}
        missing = [m for m in image.maps if m not in maps]
        if missing:
            raise UsageError(f"program {image.name} needs maps {', '.join(missing)}")
        fds = {name: (m.fd if isinstance(m, Map) else int(m)) for name, m in maps.items()
               if name in image.maps}
        insns = image.with_map_fds(fds)
        attach_btf_id = 0
        if image.attach_btf_name:
            try:
                attach_btf_id = btf.vmlinux().find(image.attach_btf_name)
            except KeyError:
                raise Unsupported(f"this kernel's BTF has no {image.attach_btf_name}",
                                  "the tp_btf program cannot attach here; use the "
                                  "tracepoint programs") from None
        self.image = image
        self.name = image.name
        self.fd, self.log = bpf.prog_load(
            isa.encode(insns), image.prog_type, name=image.name, license=image.license,
            expected_attach_type=image.expected_attach_type, attach_btf_id=attach_btf_id,
            prog_flags=image.prog_flags, log_level=log_level)
        self._id: Optional[int] = None

    @property
    def id(self) -> int:
        if self._id is None:
            self._id = self.info().id
        return self._id

    def info(self) -> bpf.ProgInfo:
        """Kernel's view: id, name, map ids, run_time_ns/run_cnt (with stats enabled)."""
        return bpf.prog_info(self._live())[0]

    def xlated(self) -> list[Insn]:
        """The instructions as the verifier rewrote them (what `bpftool prog dump xlated`
        prints)."""
        return isa.decode(bpf.prog_info(self._live(), with_xlated=True)[1])

    def test_run(self, ctx: bytes = b"", data: bytes = b"", **kw: Any) -> bpf.TestRun:
        """BPF_PROG_TEST_RUN (raw_tracepoint: ctx = u64 args; syscall: ctx = any bytes)."""
        return bpf.prog_test_run(self._live(), ctx, data, **kw)

    def _live(self) -> int:
        if self.fd < 0:
            raise UsageError(f"program {self.name} used after close")
        return self.fd

    def close(self) -> None:
        close_fd(self)


class Loader:
    """Owns the BPF objects of one run; `close()` (or leaving `with`) releases them all."""

    def __init__(self) -> None:
        self.maps: dict[str, Map] = {}
        self.programs: dict[str, Program] = {}
        self._owned: list[Any] = []

    def own(self, obj: Any) -> Any:
        """Take ownership of anything with close() (rings, links made elsewhere)."""
        self._owned.append(obj)
        return obj

    def create_map(self, spec: MapSpec) -> Map:
        if spec.name in self.maps:
            raise UsageError(f"map {spec.name} created twice")
        m = self.own(Map(spec))
        self.maps[spec.name] = m
        return m

    def create_maps(self, specs: Iterable[MapSpec]) -> dict[str, Map]:
        return {s.name: self.create_map(s) for s in specs}

    def load(self, image: Image, log_level: int = 0,
             extra_maps: Optional[Mapping[str, Union[Map, int]]] = None) -> Program:
        """Load `image`, resolving its map names from this loader's maps (and `extra_maps`)."""
        maps: dict[str, Union[Map, int]] = dict(self.maps)
        maps.update(extra_maps or {})
        prog = self.own(Program(image, maps, log_level))
        self.programs[image.name] = prog
        return prog

    def attach_tracepoint(self, prog: Program, category: str, name: str) -> _links.Link:
        return self.own(_links.attach_tracepoint(prog, category, name))

    def attach_raw_tracepoint(self, prog: Program, name: str) -> _links.Link:
        return self.own(_links.attach_raw_tracepoint(prog, name))

    def attach_tp_btf(self, prog: Program) -> _links.Link:
        return self.own(_links.attach_tp_btf(prog))

    def attach_cpu_clock(self, prog: Program, freq: int = 99, pid: int = -1,
                         cpus: Optional[list[int]] = None) -> list[_links.Link]:
        return [self.own(x) for x in _links.attach_cpu_clock(prog, freq, pid, cpus)]

    def close(self) -> None:
        """Close in reverse order; every object is tried even if one close fails."""
        first: Optional[BaseException] = None
        while self._owned:
            obj = self._owned.pop()
            try:
                obj.close()
            except BaseException as e:  # keep closing the rest
                first = first or e
        self.maps.clear()
        self.programs.clear()
        if first is not None:
            raise first

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
