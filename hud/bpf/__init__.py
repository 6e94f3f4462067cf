"""bpf layer: maps, program loading, links, ring readers and record decoders.

- `hud.bpf.maps.Map(spec)`; `hud.bpf.loader.Program(image, maps)` and `Loader`
- `hud.bpf.links.attach_tracepoint / attach_raw_tracepoint / attach_tp_btf /
  attach_perf_event / attach_cpu_clock` -> `Link`
- `hud.bpf.ringbuf.RingBuf(map)`; `hud.bpf.perfbuf.PerfRing(fd, data_pages)` and
  `PerfEventArray(map)`; `hud.bpf.records` (pure decoders)
"""
