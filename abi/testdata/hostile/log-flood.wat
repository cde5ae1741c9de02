;; wapper_read calls wapper.log with an 8 KiB message (the longest line the
;; host keeps) in an endless loop, at every level, until its deadline. The
;; host's log must stay bounded (rate-limited per plugin).
(module
  (import "wapper" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "\00\01\00\00\00\00\00\00\00\00")
  (data (i32.const 32) "\00\01")
  (func (export "wapper_abi_v1") (result i32) (i32.const 0))
  (func (export "wapper_alloc") (param $n i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $n) (i32.const 65536))
      (then (i32.const 0)) (else (i32.const 65536))))
  (func (export "wapper_free") (param i32))
  (func (export "wapper_init") (param i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_add") (param i32 i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_update") (param i32 i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_remove") (param i32) (result i64) (i64.const 0))
  (func (export "wapper_read") (param $dev i32) (param $prop i32) (result i64)
    (local $level i32)
    ;; 8 KiB of printable text at 1024.
    (memory.fill (i32.const 1024) (i32.const 0x41) (i32.const 8192))
    (loop $flood
      (call $log (i32.sub (i32.and (local.get $level) (i32.const 3)) (i32.const 1))
        (i32.const 1024) (i32.const 8192))
      (local.set $level (i32.add (local.get $level) (i32.const 1)))
      (br $flood))
    (unreachable))
  (func (export "wapper_write") (param i32 i32 i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_state") (param i32) (result i64) (i64.const 0x2000000002))
)
