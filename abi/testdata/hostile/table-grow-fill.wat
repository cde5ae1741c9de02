;; A table whose maximum (2^27+16 elements) looks like a real limit but is
;; 1 GiB of host memory: wapper_read grows it by 2^27 and fills every
;; element with a function reference, so that the memory is touched. A
;; plugin limited to 64 MiB of linear memory must not cost the host a
;; gigabyte: the loader should refuse the maximum, or the grow must fail.
(module
  (memory (export "memory") 2)
  (table $t 16 0x08000010 funcref)
  (elem declare func $target)
  (data (i32.const 16) "\00\01\00\00\00\00\00\00\00\00")
  (data (i32.const 32) "\00\01")
  (func $target)
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
    (local $old i32)
    (local.set $old (table.grow $t (ref.null func) (i32.const 0x08000000)))
    (if (i32.ne (local.get $old) (i32.const -1))
      (then
        (table.fill $t (i32.const 0) (ref.func $target) (table.size $t))))
    ;; The value read is what table.grow answered: -1 when refused.
    (i64.store (i32.const 18) (i64.extend_i32_s (local.get $old)))
    (i64.const 0x100000000a))
  (func (export "wapper_write") (param i32 i32 i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_state") (param i32) (result i64) (i64.const 0x2000000002))
)
