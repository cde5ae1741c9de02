;; wapper_read returns a broken result per property handle. The host must
;; check every result before it copies it: a failed read (and a new
;; instance where the result is malformed), never a crash or a read
;; outside guest memory.
;;
;; handle: result (ptr<<32 | len)
;;   1 ptr 0x7FFF0000, len 16: outside memory
;;   2 ptr 16, len 4 MiB + 1: over the ABI's buffer limit
;;   3 ptr 0xFFFFFFF0, len 0x20: ptr+len wraps past 2^32
;;   4 ptr 16, len 0xFFFFFFFF
;;   5 a value of unknown type 99: malformed, but inside memory
;;   6 a valid STRING of 4 MiB - 2 bytes (the largest result allowed)
;;   7 ptr 16, len 0
;;   8 the 4 MiB string of 6 again, for a property declared INT: the host
;;     must not copy all of it into its error message and log
;;   other: INT 1
(module
  (memory (export "memory") 96)
  (data (i32.const 16) "\00\01\01\00\00\00\00\00\00\00")
  (data (i32.const 32) "\00\01")
  (data (i32.const 48) "\00\63\00")
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
    (if (i32.eq (local.get $prop) (i32.const 1)) (then (return (i64.const 0x7FFF000000000010))))
    (if (i32.eq (local.get $prop) (i32.const 2)) (then (return (i64.const 0x0000001000400001))))
    (if (i32.eq (local.get $prop) (i32.const 3)) (then (return (i64.const 0xFFFFFFF000000020))))
    (if (i32.eq (local.get $prop) (i32.const 4)) (then (return (i64.const 0x00000010FFFFFFFF))))
    (if (i32.eq (local.get $prop) (i32.const 5)) (then (return (i64.const 0x0000003000000003))))
    (if (i32.or (i32.eq (local.get $prop) (i32.const 6)) (i32.eq (local.get $prop) (i32.const 8))) (then
      ;; At 1 MiB: status 0, type STRING, then 'Z' up to 4 MiB.
      (i32.store8 (i32.const 0x100000) (i32.const 0))
      (i32.store8 (i32.const 0x100001) (i32.const 4))
      (memory.fill (i32.const 0x100002) (i32.const 0x5A) (i32.const 0x3FFFFE))
      (return (i64.const 0x0010000000400000))))
    (if (i32.eq (local.get $prop) (i32.const 7)) (then (return (i64.const 0x0000001000000000))))
    (i64.const 0x100000000a))
  (func (export "wapper_write") (param i32 i32 i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_state") (param i32) (result i64) (i64.const 0x2000000002))
)
