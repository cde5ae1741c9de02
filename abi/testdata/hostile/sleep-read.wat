;; wapper_read sleeps for 10 minutes in WASI poll_oneoff (one relative
;; clock subscription). wazero's own nanosleep ignores the call's context,
;; so unless the host bounds the sleep by the call's deadline, the call,
;; its instance and the host's shutdown wait for the full 10 minutes.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "\00\01\00\00\00\00\00\00\00\00")
  (data (i32.const 32) "\00\01")
  ;; sleep builds a clock subscription at 256 (48 bytes: userdata, tag 0
  ;; = clock at +8, clock id at +16, timeout in ns at +24, precision at
  ;; +32, flags 0 = relative at +40), events go to 512, the count to 600.
  ;; It returns the errno.
  (func $sleep (param $ns i64) (result i32)
    (memory.fill (i32.const 256) (i32.const 0) (i32.const 48))
    (i32.store (i32.const 272) (i32.const 1))
    (i64.store (i32.const 280) (local.get $ns))
    (call $poll_oneoff (i32.const 256) (i32.const 512) (i32.const 1) (i32.const 600)))
  (func (export "wapper_abi_v1") (result i32) (i32.const 0))
  (func (export "wapper_alloc") (param $n i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $n) (i32.const 65536))
      (then (i32.const 0)) (else (i32.const 65536))))
  (func (export "wapper_free") (param i32))
  (func (export "wapper_init") (param i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_add") (param i32 i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_update") (param i32 i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_remove") (param i32) (result i64) (i64.const 0))
  ;; The value read (if the sleep ever returns) is poll_oneoff's errno.
  (func (export "wapper_read") (param $dev i32) (param $prop i32) (result i64)
    (i64.store (i32.const 18)
      (i64.extend_i32_u (call $sleep (i64.const 600000000000))))
    (i64.const 0x100000000a))
  (func (export "wapper_write") (param i32 i32 i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_state") (param i32) (result i64) (i64.const 0x2000000002))
)
