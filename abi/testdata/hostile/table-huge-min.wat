;; A table that starts with 2^27 elements: 1 GiB of host memory for each
;; instance before any of its code runs. The loader must refuse it
;; (SPEC.md §9: a table that starts above 2^20 elements is refused).
(module
  (memory (export "memory") 2)
  (table $t 0x08000000 funcref)
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
  ;; The value read is the table's size.
  (func (export "wapper_read") (param $dev i32) (param $prop i32) (result i64)
    (i64.store (i32.const 18) (i64.extend_i32_u (table.size $t)))
    (i64.const 0x100000000a))
  (func (export "wapper_write") (param i32 i32 i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_state") (param i32) (result i64) (i64.const 0x2000000002))
)
