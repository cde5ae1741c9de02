;; wapper_alloc returns garbage for every buffer but the plugin config
;; ("{}", 2 bytes): a pointer where ptr+len wraps past 2^32, one outside
;; memory, one whose buffer crosses the end of memory, 0 (refused), or a
;; valid but overlapping pointer, picked by the monotonic clock so that a
;; new instance does not repeat the same one. The host must check the
;; pointer before it writes (and then throw the instance away), never
;; write outside guest memory or crash.
(module
  (import "wapper" "clock_ns" (func $clock_ns (param i32) (result i64)))
  (memory (export "memory") 2)
  (data (i32.const 16) "\00\01\07\00\00\00\00\00\00\00")
  (data (i32.const 32) "\00\01")
  (func (export "wapper_abi_v1") (result i32) (i32.const 0))
  (func (export "wapper_alloc") (param $n i32) (result i32)
    (local $pick i32)
    (if (i32.le_u (local.get $n) (i32.const 2)) (then (return (i32.const 65536))))
    (local.set $pick (i32.wrap_i64 (i64.rem_u
      (i64.shr_u (call $clock_ns (i32.const 1)) (i64.const 20)) (i64.const 5))))
    (if (i32.eq (local.get $pick) (i32.const 0)) (then (return (i32.const 0xFFFFFFF0))))
    (if (i32.eq (local.get $pick) (i32.const 1)) (then (return (i32.const 0x7FFFFFF0))))
    (if (i32.eq (local.get $pick) (i32.const 2)) (then (return (i32.const 131064))))
    (if (i32.eq (local.get $pick) (i32.const 3)) (then (return (i32.const 0))))
    (i32.const 8))
  (func (export "wapper_free") (param i32))
  (func (export "wapper_init") (param i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_add") (param i32 i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_update") (param i32 i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_remove") (param i32) (result i64) (i64.const 0))
  (func (export "wapper_read") (param $dev i32) (param $prop i32) (result i64)
    (i64.const 0x100000000a))
  (func (export "wapper_write") (param i32 i32 i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_state") (param i32) (result i64) (i64.const 0x2000000002))
)
