;; A table with no maximum: wapper_read grows it by 0xFFFFFF00 elements,
;; which a host that keeps tables as Go slices pays for with 32 GiB.
;; The grow must fail (-1): a table with no maximum keeps its initial
;; size (SPEC.md §9; refusing the module would refuse every Go plugin,
;; whose linker declares no maximum either).
(module
  (memory (export "memory") 2)
  (table $t 1 funcref)
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
    ;; The value read is what table.grow answered: -1 when refused.
    (i64.store (i32.const 18)
      (i64.extend_i32_s (table.grow $t (ref.null func) (i32.const 0xFFFFFF00))))
    (i64.const 0x100000000a))
  (func (export "wapper_write") (param i32 i32 i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_state") (param i32) (result i64) (i64.const 0x2000000002))
)
