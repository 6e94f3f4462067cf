"""UAPI constants of include/uapi/linux/bpf.h with their real values (kernel names).

Source: include/uapi/linux/bpf.h of Linux 6.18, checked against the vmlinux BTF of
6.18.44 (tests/root/test_bpf_uapi_btf.py compares every enum here with the running
kernel's) and against the 6.1 userspace header. Enums are written out with explicit
values because they are not contiguous: BPF_PROG_RUN aliases BPF_PROG_TEST_RUN (10), so a
parser that counts entries gets every bpf_cmd from BPF_PROG_GET_NEXT_ID on wrong by one.
"""
from __future__ import annotations

# enum bpf_cmd
BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_PROG_LOAD = 5
BPF_OBJ_PIN = 6
BPF_OBJ_GET = 7
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_TEST_RUN = 10
BPF_PROG_RUN = BPF_PROG_TEST_RUN   # alias: the next value is 11, not 12
BPF_PROG_GET_NEXT_ID = 11
BPF_MAP_GET_NEXT_ID = 12
BPF_PROG_GET_FD_BY_ID = 13
BPF_MAP_GET_FD_BY_ID = 14
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16
BPF_RAW_TRACEPOINT_OPEN = 17
BPF_BTF_LOAD = 18
BPF_BTF_GET_FD_BY_ID = 19
BPF_TASK_FD_QUERY = 20
BPF_MAP_LOOKUP_AND_DELETE_ELEM = 21
BPF_MAP_FREEZE = 22
BPF_BTF_GET_NEXT_ID = 23
BPF_MAP_LOOKUP_BATCH = 24
BPF_MAP_LOOKUP_AND_DELETE_BATCH = 25
BPF_MAP_UPDATE_BATCH = 26
BPF_MAP_DELETE_BATCH = 27
BPF_LINK_CREATE = 28
BPF_LINK_UPDATE = 29
BPF_LINK_GET_FD_BY_ID = 30
BPF_LINK_GET_NEXT_ID = 31
BPF_ENABLE_STATS = 32
BPF_ITER_CREATE = 33
BPF_LINK_DETACH = 34
BPF_PROG_BIND_MAP = 35
BPF_TOKEN_CREATE = 36

# enum bpf_map_type
BPF_MAP_TYPE_UNSPEC = 0
BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PROG_ARRAY = 3
BPF_MAP_TYPE_PERF_EVENT_ARRAY = 4
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_STACK_TRACE = 7
BPF_MAP_TYPE_CGROUP_ARRAY = 8
BPF_MAP_TYPE_LRU_HASH = 9
BPF_MAP_TYPE_LRU_PERCPU_HASH = 10
BPF_MAP_TYPE_LPM_TRIE = 11
BPF_MAP_TYPE_ARRAY_OF_MAPS = 12
BPF_MAP_TYPE_HASH_OF_MAPS = 13
BPF_MAP_TYPE_QUEUE = 22
BPF_MAP_TYPE_STACK = 23
BPF_MAP_TYPE_RINGBUF = 27
BPF_MAP_TYPE_TASK_STORAGE = 29
BPF_MAP_TYPE_BLOOM_FILTER = 30
BPF_MAP_TYPE_USER_RINGBUF = 31

# Map types whose userspace lookups return one value per possible CPU.
PERCPU_MAP_TYPES = frozenset({BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY,
                              BPF_MAP_TYPE_LRU_PERCPU_HASH})

# enum bpf_prog_type
BPF_PROG_TYPE_UNSPEC = 0
BPF_PROG_TYPE_SOCKET_FILTER = 1
BPF_PROG_TYPE_KPROBE = 2
BPF_PROG_TYPE_TRACEPOINT = 5
BPF_PROG_TYPE_PERF_EVENT = 7
BPF_PROG_TYPE_RAW_TRACEPOINT = 17
BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE = 24
BPF_PROG_TYPE_TRACING = 26
BPF_PROG_TYPE_EXT = 28
BPF_PROG_TYPE_LSM = 29
BPF_PROG_TYPE_SYSCALL = 31

# enum bpf_attach_type (only the tracing ones hud may use)
BPF_TRACE_RAW_TP = 23
BPF_TRACE_FENTRY = 24
BPF_TRACE_FEXIT = 25
BPF_MODIFY_RETURN = 26
BPF_TRACE_ITER = 28
BPF_PERF_EVENT = 41
BPF_TRACE_KPROBE_MULTI = 42
BPF_TRACE_UPROBE_MULTI = 48

# enum bpf_link_type
BPF_LINK_TYPE_UNSPEC = 0
BPF_LINK_TYPE_RAW_TRACEPOINT = 1
BPF_LINK_TYPE_TRACING = 2
BPF_LINK_TYPE_CGROUP = 3
BPF_LINK_TYPE_ITER = 4
BPF_LINK_TYPE_NETNS = 5
BPF_LINK_TYPE_XDP = 6
BPF_LINK_TYPE_PERF_EVENT = 7
BPF_LINK_TYPE_KPROBE_MULTI = 8
BPF_LINK_TYPE_UPROBE_MULTI = 12

# enum bpf_stats_type
BPF_STATS_RUN_TIME = 0

# BPF_MAP_UPDATE_ELEM flags
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
BPF_F_LOCK = 4

# BPF_MAP_CREATE map_flags
BPF_F_NO_PREALLOC = 1 << 0
BPF_F_NO_COMMON_LRU = 1 << 1
BPF_F_NUMA_NODE = 1 << 2
BPF_F_RDONLY = 1 << 3
BPF_F_WRONLY = 1 << 4
BPF_F_STACK_BUILD_ID = 1 << 5
BPF_F_ZERO_SEED = 1 << 6
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_WRONLY_PROG = 1 << 8
BPF_F_MMAPABLE = 1 << 10

# BPF_PROG_LOAD prog_flags
BPF_F_STRICT_ALIGNMENT = 1 << 0
BPF_F_ANY_ALIGNMENT = 1 << 1
BPF_F_TEST_RND_HI32 = 1 << 2
BPF_F_TEST_STATE_FREQ = 1 << 3
BPF_F_SLEEPABLE = 1 << 4

# BPF_PROG_TEST_RUN flags
BPF_F_TEST_RUN_ON_CPU = 1 << 0

# Pseudo sources: ld_imm64 src_reg, call src_reg
BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2
BPF_PSEUDO_BTF_ID = 3
BPF_PSEUDO_FUNC = 4
BPF_PSEUDO_MAP_IDX = 5
BPF_PSEUDO_MAP_IDX_VALUE = 6
BPF_PSEUDO_CALL = 1
BPF_PSEUDO_KFUNC_CALL = 2

# bpf_perf_event_output / bpf_skb_output flags. BPF_F_CURRENT_CPU is the 32-bit index
# mask: a sign-extended 64-bit -1 in r3 is not it and makes the helper return -EINVAL.
BPF_F_INDEX_MASK = 0xFFFFFFFF
BPF_F_CURRENT_CPU = BPF_F_INDEX_MASK
BPF_F_CTXLEN_MASK = 0xFFFFF << 32

# bpf_get_stackid / bpf_get_stack flags
BPF_F_SKIP_FIELD_MASK = 0xFF
BPF_F_USER_STACK = 1 << 8
BPF_F_FAST_STACK_CMP = 1 << 9
BPF_F_REUSE_STACKID = 1 << 10
BPF_F_USER_BUILD_ID = 1 << 11

# BPF ringbuf: record header bits and helper flags
BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RINGBUF_HDR_SZ = 8
BPF_RB_NO_WAKEUP = 1 << 0
BPF_RB_FORCE_WAKEUP = 1 << 1
BPF_RB_AVAIL_DATA = 0
BPF_RB_RING_SIZE = 1
BPF_RB_CONS_POS = 2
BPF_RB_PROD_POS = 3

BPF_OBJ_NAME_LEN = 16
BPF_TAG_SIZE = 8

# enum bpf_func_id: helper numbers by name (without the BPF_FUNC_ prefix), all of 6.18.
HELPERS: dict[str, int] = {
    "unspec": 0, "map_lookup_elem": 1, "map_update_elem": 2, "map_delete_elem": 3,
    "probe_read": 4, "ktime_get_ns": 5, "trace_printk": 6, "get_prandom_u32": 7,
    "get_smp_processor_id": 8, "skb_store_bytes": 9, "l3_csum_replace": 10,
    "l4_csum_replace": 11, "tail_call": 12, "clone_redirect": 13, "get_current_pid_tgid": 14,
    "get_current_uid_gid": 15, "get_current_comm": 16, "get_cgroup_classid": 17,
    "skb_vlan_push": 18, "skb_vlan_pop": 19, "skb_get_tunnel_key": 20, "skb_set_tunnel_key": 21,
    "perf_event_read": 22, "redirect": 23, "get_route_realm": 24, "perf_event_output": 25,
    "skb_load_bytes": 26, "get_stackid": 27, "csum_diff": 28, "skb_get_tunnel_opt": 29,
    "skb_set_tunnel_opt": 30, "skb_change_proto": 31, "skb_change_type": 32,
    "skb_under_cgroup": 33, "get_hash_recalc": 34, "get_current_task": 35,
    "probe_write_user": 36, "current_task_under_cgroup": 37, "skb_change_tail": 38,
    "skb_pull_data": 39, "csum_update": 40, "set_hash_invalid": 41, "get_numa_node_id": 42,
    "skb_change_head": 43, "xdp_adjust_head": 44, "probe_read_str": 45, "get_socket_cookie": 46,
    "get_socket_uid": 47, "set_hash": 48, "setsockopt": 49, "skb_adjust_room": 50,
    "redirect_map": 51, "sk_redirect_map": 52, "sock_map_update": 53, "xdp_adjust_meta": 54,
    "perf_event_read_value": 55, "perf_prog_read_value": 56, "getsockopt": 57,
    "override_return": 58, "sock_ops_cb_flags_set": 59, "msg_redirect_map": 60,
    "msg_apply_bytes": 61, "msg_cork_bytes": 62, "msg_pull_data": 63, "bind": 64,
    "xdp_adjust_tail": 65, "skb_get_xfrm_state": 66, "get_stack": 67,
    "skb_load_bytes_relative": 68, "fib_lookup": 69, "sock_hash_update": 70,
    "msg_redirect_hash": 71, "sk_redirect_hash": 72, "lwt_push_encap": 73,
    "lwt_seg6_store_bytes": 74, "lwt_seg6_adjust_srh": 75, "lwt_seg6_action": 76,
    "rc_repeat": 77, "rc_keydown": 78, "skb_cgroup_id": 79, "get_current_cgroup_id": 80,
    "get_local_storage": 81, "sk_select_reuseport": 82, "skb_ancestor_cgroup_id": 83,
    "sk_lookup_tcp": 84, "sk_lookup_udp": 85, "sk_release": 86, "map_push_elem": 87,
    "map_pop_elem": 88, "map_peek_elem": 89, "msg_push_data": 90, "msg_pop_data": 91,
    "rc_pointer_rel": 92, "spin_lock": 93, "spin_unlock": 94, "sk_fullsock": 95, "tcp_sock": 96,
    "skb_ecn_set_ce": 97, "get_listener_sock": 98, "skc_lookup_tcp": 99,
    "tcp_check_syncookie": 100, "sysctl_get_name": 101, "sysctl_get_current_value": 102,
    "sysctl_get_new_value": 103, "sysctl_set_new_value": 104, "strtol": 105, "strtoul": 106,
    "sk_storage_get": 107, "sk_storage_delete": 108, "send_signal": 109,
    "tcp_gen_syncookie": 110, "skb_output": 111, "probe_read_user": 112,
    "probe_read_kernel": 113, "probe_read_user_str": 114, "probe_read_kernel_str": 115,
    "tcp_send_ack": 116, "send_signal_thread": 117, "jiffies64": 118,
    "read_branch_records": 119, "get_ns_current_pid_tgid": 120, "xdp_output": 121,
    "get_netns_cookie": 122, "get_current_ancestor_cgroup_id": 123, "sk_assign": 124,
    "ktime_get_boot_ns": 125, "seq_printf": 126, "seq_write": 127, "sk_cgroup_id": 128,
    "sk_ancestor_cgroup_id": 129, "ringbuf_output": 130, "ringbuf_reserve": 131,
    "ringbuf_submit": 132, "ringbuf_discard": 133, "ringbuf_query": 134, "csum_level": 135,
    "skc_to_tcp6_sock": 136, "skc_to_tcp_sock": 137, "skc_to_tcp_timewait_sock": 138,
    "skc_to_tcp_request_sock": 139, "skc_to_udp6_sock": 140, "get_task_stack": 141,
    "load_hdr_opt": 142, "store_hdr_opt": 143, "reserve_hdr_opt": 144, "inode_storage_get": 145,
    "inode_storage_delete": 146, "d_path": 147, "copy_from_user": 148, "snprintf_btf": 149,
    "seq_printf_btf": 150, "skb_cgroup_classid": 151, "redirect_neigh": 152, "per_cpu_ptr": 153,
    "this_cpu_ptr": 154, "redirect_peer": 155, "task_storage_get": 156,
    "task_storage_delete": 157, "get_current_task_btf": 158, "bprm_opts_set": 159,
    "ktime_get_coarse_ns": 160, "ima_inode_hash": 161, "sock_from_file": 162, "check_mtu": 163,
    "for_each_map_elem": 164, "snprintf": 165, "sys_bpf": 166, "btf_find_by_name_kind": 167,
    "sys_close": 168, "timer_init": 169, "timer_set_callback": 170, "timer_start": 171,
    "timer_cancel": 172, "get_func_ip": 173, "get_attach_cookie": 174, "task_pt_regs": 175,
    "get_branch_snapshot": 176, "trace_vprintk": 177, "skc_to_unix_sock": 178,
    "kallsyms_lookup_name": 179, "find_vma": 180, "loop": 181, "strncmp": 182,
    "get_func_arg": 183, "get_func_ret": 184, "get_func_arg_cnt": 185, "get_retval": 186,
    "set_retval": 187, "xdp_get_buff_len": 188, "xdp_load_bytes": 189, "xdp_store_bytes": 190,
    "copy_from_user_task": 191, "skb_set_tstamp": 192, "ima_file_hash": 193, "kptr_xchg": 194,
    "map_lookup_percpu_elem": 195, "skc_to_mptcp_sock": 196, "dynptr_from_mem": 197,
    "ringbuf_reserve_dynptr": 198, "ringbuf_submit_dynptr": 199, "ringbuf_discard_dynptr": 200,
    "dynptr_read": 201, "dynptr_write": 202, "dynptr_data": 203,
    "tcp_raw_gen_syncookie_ipv4": 204, "tcp_raw_gen_syncookie_ipv6": 205,
    "tcp_raw_check_syncookie_ipv4": 206, "tcp_raw_check_syncookie_ipv6": 207,
    "ktime_get_tai_ns": 208, "user_ringbuf_drain": 209, "cgrp_storage_get": 210,
    "cgrp_storage_delete": 211,
}
HELPER_NAMES: dict[int, str] = {v: k for k, v in HELPERS.items()}


def helper_id(name: str) -> int:
    """The helper number of `name` ("ktime_get_ns" or "bpf_ktime_get_ns")."""
    key = name[4:] if name.startswith("bpf_") else name
    try:
        return HELPERS[key]
    except KeyError:
        raise KeyError(f"unknown BPF helper {name!r}") from None


def constants(prefix: str) -> dict[str, int]:
    """Every constant of this module whose name starts with `prefix`, e.g. "BPF_MAP_TYPE_"."""
    return {k: v for k, v in globals().items()
            if k.startswith(prefix) and isinstance(v, int) and not isinstance(v, bool)}
