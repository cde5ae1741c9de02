;; wapper_read grows the memory one page at a time until memory.grow
;; refuses (limits.memoryMiB), writes to every page so that the host
;; really holds it, and traps, so that the host makes a new instance
;; which does the same.
(module
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
    (local $page i32)
    (loop $grow
      (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    ;; Touch every page from the third on.
    (local.set $page (i32.const 2))
    (loop $touch
      (if (i32.lt_u (local.get $page) (memory.size))
        (then
          (i32.store (i32.shl (local.get $page) (i32.const 16)) (local.get $page))
          (local.set $page (i32.add (local.get $page) (i32.const 1)))
          (br $touch))))
    (unreachable))
  (func (export "wapper_write") (param i32 i32 i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_state") (param i32) (result i64) (i64.const 0x2000000002))
)
