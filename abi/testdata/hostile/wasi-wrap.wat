;; wapper_read calls WASI poll_oneoff with 2^28 subscriptions: their sizes
;; (48 and 32 bytes each) wrap to 0 in 32 bits, so a host that computes
;; them in uint32 checks an empty range and then indexes past it (wazero
;; 1.12 does: a Go panic inside the host function). The host must turn it
;; into a trap of this instance, never a crash of its own.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
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
  ;; The value read (if poll_oneoff returns) is its errno.
  (func (export "wapper_read") (param $dev i32) (param $prop i32) (result i64)
    (i64.store (i32.const 18) (i64.extend_i32_u
      (call $poll_oneoff (i32.const 256) (i32.const 512) (i32.const 0x10000000) (i32.const 600))))
    (i64.const 0x100000000a))
  (func (export "wapper_write") (param i32 i32 i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_state") (param i32) (result i64) (i64.const 0x2000000002))
)
